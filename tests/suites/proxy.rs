//! The pooler end to end: real PostgreSQL behind pgtide, real clients in front (psql, pgbench,
//! tokio-postgres, deadpool-postgres, and raw sockets for hostile input).

use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgtide_harness::{pg_command, Auth, Cluster, Pgtide, PgtideBuilder};
use pgtide_pool_core::FailureClass;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

mod common;
use common::*;

fn cluster(auth: Auth) -> Cluster {
    app_cluster(auth)
}

/// pgtide in transaction mode (trust for clients) in front of `cluster`, logging in to the
/// server with the app password.
fn pgtide(cluster: &Cluster, max_size: u32) -> Pgtide {
    pgtide_with(cluster, &[("pool.max_size", &max_size.to_string())])
}

fn psql(p: &Pgtide, script: &str) -> std::process::Output {
    let mut child = psql_command(p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().expect("psql finishes")
}

#[test]
fn psql_queries_copy_multi_statement_and_rollback() {
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 3);
    let out = psql(
        &p,
        "CREATE TABLE t(a int, b text); INSERT INTO t VALUES (1, 'x'), (2, 'y'); SELECT count(*) FROM t;\n\
         \\copy t from stdin\n3\tz\n4\tw\n\\.\n\
         \\copy t to stdout\n\
         BEGIN;\nSELECT 1/0;\nROLLBACK;\nSELECT 'after-rollback-' || count(*) FROM t;\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.lines().any(|l| l == "2"),
        "count after multi-statement:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("3\tz") && stdout.contains("4\tw"),
        "copy out:\n{stdout}"
    );
    assert!(stderr.contains("division by zero"), "{stderr}");
    assert!(
        stdout.contains("after-rollback-4"),
        "usable after ROLLBACK:\n{stdout}\n{stderr}"
    );
}

/// Runs pgbench through pgtide while watching the server's connection count.
fn pgbench_through(p: &Pgtide, c: &Cluster, args: &[&str]) -> (String, usize) {
    let max_seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (max_seen, done) = (max_seen.clone(), done.clone());
        let conn = c.superuser_conn_string("postgres");
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let n = pgtide_harness::psql(
                    &conn,
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'",
                )
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(0);
                max_seen.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let out = pg_command("pgbench")
        .args(["-h", "127.0.0.1", "-p", &p.port().to_string(), "-U", USER])
        .args(args)
        .arg(DB)
        .output()
        .expect("pgbench runs");
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    (text, max_seen.load(Ordering::Relaxed))
}

#[test]
fn pgbench_50_clients_over_5_servers_simple_and_extended() {
    let c = cluster(Auth::ScramSha256);
    let init = pg_command("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &c.port().to_string(),
            "-U",
            USER,
            DB,
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let p = pgtide(&c, 5);
    for mode in ["simple", "extended"] {
        let (text, max_seen) =
            pgbench_through(&p, &c, &["-c", "50", "-j", "4", "-T", "3", "-M", mode]);
        assert!(
            text.contains("number of failed transactions: 0"),
            "{mode}:\n{text}"
        );
        assert!(!text.contains("error"), "{mode}:\n{text}");
        assert!(
            max_seen <= 5,
            "{mode}: server saw {max_seen} connections, pool max is 5"
        );
        assert!(
            max_seen >= 1,
            "{mode}: the watcher saw no pgtide connection"
        );
    }
    drop(p);
    // The default runs on one thread; several workers share the same pools across threads.
    let p = pgtide_with(&c, &[("pool.max_size", "5"), ("pgtide.workers", "3")]);
    let (text, max_seen) = pgbench_through(
        &p,
        &c,
        &["-c", "50", "-j", "4", "-T", "2", "-M", "extended"],
    );
    assert!(
        text.contains("number of failed transactions: 0") && !text.contains("error"),
        "workers = 3:\n{text}"
    );
    assert!(
        max_seen <= 5,
        "workers = 3: server saw {max_seen} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_unnamed_statements_pipelining_transactions_and_copy() {
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 2);
    let client = connect(&p).await;
    client
        .batch_execute("CREATE TABLE kv(k int PRIMARY KEY, v text)")
        .await
        .unwrap();

    // Unnamed Parse/Bind/Execute in one round trip, many times, across servers.
    for i in 0..20i32 {
        let rows = client
            .query_typed(
                "SELECT $1::int4 + 1",
                &[(&i, tokio_postgres::types::Type::INT4)],
            )
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i32>(0), i + 1);
    }
    // Pipelined: several queries in flight on one connection.
    let values: Vec<i32> = (0..10).collect();
    type Param<'a> = (
        &'a (dyn tokio_postgres::types::ToSql + Sync),
        tokio_postgres::types::Type,
    );
    let params: Vec<[Param<'_>; 1]> = values
        .iter()
        .map(|v| {
            [(
                v as &(dyn tokio_postgres::types::ToSql + Sync),
                tokio_postgres::types::Type::INT4,
            )]
        })
        .collect();
    let futures: Vec<_> = params
        .iter()
        .map(|p| client.query_typed("SELECT $1::int4 * 2", p))
        .collect();
    for (i, r) in futures::future::join_all(futures)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap()[0].get::<_, i32>(0), i as i32 * 2);
    }

    // Named statements inside one transaction stay on one server.
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    let ins = tx.prepare("INSERT INTO kv VALUES ($1, $2)").await.unwrap();
    for k in 0..5i32 {
        tx.execute(&ins, &[&k, &format!("v{k}")]).await.unwrap();
    }
    // COPY in and out.
    let sink = tx.copy_in("COPY kv FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    use futures::SinkExt;
    sink.send(bytes::Bytes::from_static(b"100\tcopied\n101\tcopied\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    let stream = tx
        .copy_out("COPY (SELECT k FROM kv ORDER BY k) TO STDOUT")
        .await
        .unwrap();
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let text: String = chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(text, "0\n1\n2\n3\n4\n100\n101\n");
    tx.commit().await.unwrap();

    let n = simple_value(
        &client
            .simple_query("SELECT count(*) FROM kv")
            .await
            .unwrap(),
    );
    assert_eq!(n, "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_clients_share_a_small_pool() {
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 2);
    let cfg: tokio_postgres::Config = p.conn_string(USER, None, DB).parse().unwrap();
    let mgr = deadpool_postgres::Manager::new(cfg, NoTls);
    let pool = deadpool_postgres::Pool::builder(mgr)
        .max_size(8)
        .build()
        .unwrap();
    {
        let client = pool.get().await.unwrap();
        client
            .batch_execute("CREATE TABLE hits(n int)")
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..16i32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = pool.get().await.unwrap();
            for j in 0..10i32 {
                let tx = client.transaction().await.unwrap();
                tx.execute("INSERT INTO hits VALUES ($1)", &[&(i * 100 + j)])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let client = pool.get().await.unwrap();
    assert_eq!(
        simple_value(
            &client
                .simple_query("SELECT count(*) FROM hits")
                .await
                .unwrap()
        ),
        "160"
    );
    assert!(c.connection_count(Some(USER)) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_do_not_leak_between_clients() {
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 1); // one server: both clients must share it
    let a = connect(&p).await;
    let b = connect(&p).await;
    let tz_default = simple_value(&b.simple_query("SHOW TimeZone").await.unwrap());
    a.simple_query("SET TimeZone = 'America/New_York'")
        .await
        .unwrap();
    a.simple_query("SET application_name = 'client-a'")
        .await
        .unwrap();
    assert_eq!(
        simple_value(&b.simple_query("SHOW TimeZone").await.unwrap()),
        tz_default
    );
    assert_ne!(
        simple_value(&b.simple_query("SHOW application_name").await.unwrap()),
        "client-a"
    );
    // A gets its own settings back on the (same, shared) server.
    assert_eq!(
        simple_value(&a.simple_query("SHOW TimeZone").await.unwrap()),
        "America/New_York"
    );
    assert_eq!(
        simple_value(&a.simple_query("SHOW application_name").await.unwrap()),
        "client-a"
    );
    // Two interleaved transactions never see each other's uncommitted state.
    a.batch_execute("CREATE TABLE iso(x int)").await.unwrap();
    drop(b);
    let p2 = pgtide(&c, 2);
    let a2 = connect(&p2).await;
    let b2 = connect(&p2).await;
    a2.batch_execute("BEGIN; INSERT INTO iso VALUES (1)")
        .await
        .unwrap();
    b2.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        simple_value(&b2.simple_query("SELECT count(*) FROM iso").await.unwrap()),
        "0"
    );
    a2.batch_execute("COMMIT").await.unwrap();
    b2.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        simple_value(&b2.simple_query("SELECT count(*) FROM iso").await.unwrap()),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_returns_57014_quickly_and_the_server_is_reused() {
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 1);
    let client = connect(&p).await;
    let token = client.cancel_token();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30)").await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(NoTls).await.unwrap();
    let (client, r) = sleeper.await.unwrap();
    let err = r.expect_err("the query was cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        simple_value(&client.simple_query("SELECT 'again'").await.unwrap()),
        "again"
    );
    assert_eq!(
        c.connection_count(Some(USER)),
        1,
        "the one server was reused"
    );
    // A cancel for a client with no query running is ignored and harms nothing.
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    assert_eq!(
        simple_value(&client.simple_query("SELECT 'still'").await.unwrap()),
        "still"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_methods_and_errors() {
    let c = cluster(Auth::ScramSha256);
    for auth_type in ["scram-sha-256", "md5"] {
        let p = PgtideBuilder::new(&c, DB)
            .set("pgtide.auth_type", auth_type)
            .user(USER, PASSWORD)
            .start()
            .unwrap();
        let client = connect_as(&p, USER, Some(PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("{auth_type}: {e}"));
        assert_eq!(
            simple_value(&client.simple_query("SELECT 1").await.unwrap()),
            "1"
        );
        for (user, password) in [(USER, "wrong"), ("nobody", "whatever")] {
            let err = connect_as(&p, user, Some(password))
                .await
                .map(|_| ())
                .expect_err("refused");
            assert_eq!(
                err.code(),
                Some(&SqlState::INVALID_PASSWORD),
                "{auth_type} {user}: {err}"
            );
        }
        let failures = &p.handle().shared().failures;
        assert_eq!(
            failures.get(FailureClass::ClientAuthFailed),
            2,
            "{auth_type}: both refusals counted"
        );
    }
    let p = pgtide(&c, 2);
    let (_, conn) = (
        0,
        tokio_postgres::connect(&p.conn_string(USER, None, "nosuchdb"), NoTls).await,
    );
    let err = conn.map(|_| ()).expect_err("unknown database refused");
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_auth_md5_and_wrong_server_password() {
    let c = cluster(Auth::Md5);
    let p = pgtide(&c, 2);
    let client = connect(&p).await;
    assert_eq!(
        simple_value(&client.simple_query("SELECT current_user").await.unwrap()),
        USER
    );
    let bad = PgtideBuilder::new(&c, DB)
        .set("databases.app.password", "nope")
        .start()
        .unwrap();
    let err = connect_as(&bad, USER, None)
        .await
        .map(|_| ())
        .expect_err("server refuses pgtide");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert!(
        db.message().contains("password authentication failed"),
        "{db:?}"
    );
    assert!(
        db.message().contains("pool app/app"),
        "names the pool: {db:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transaction_leaves_no_server_in_a_bad_state() {
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 2);
    let other = connect(&p).await;
    other
        .batch_execute("CREATE TABLE victim(x int)")
        .await
        .unwrap();
    let mut child = psql_command(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"BEGIN;\nINSERT INTO victim VALUES (99);\nSELECT 'inside-tx';\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("inside-tx") {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "psql ended early");
        seen.push(byte[0]);
    }
    child.kill().unwrap(); // SIGKILL: no Terminate, no ROLLBACK from the client
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stuck = c
            .superuser_psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state LIKE 'idle in transaction%'")
            .unwrap();
        if stuck.trim() == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a server stayed idle in transaction"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        simple_value(
            &other
                .simple_query("SELECT count(*) FROM victim")
                .await
                .unwrap()
        ),
        "0"
    );
    assert!(c.connection_count(Some(USER)) <= 2);
}

/// Sends bytes on a fresh connection and returns whatever pgtide answers before closing.
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = StdTcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_never_disturbs_other_clients() {
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 2);
    let good = connect(&p).await;
    let port = p.port();
    let handles = tokio::task::spawn_blocking(move || {
        // Random bytes (deterministic LCG so a failure reproduces).
        let mut seed: u64 = 0x5eed;
        for round in 0..30 {
            let len = 1 + (round * 37) % 300;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            raw_exchange(port, &bytes);
        }
        // Unsupported protocol version → 0A000.
        let v2 = raw_exchange(
            port,
            &startup_packet(2 << 16, &[("user", USER), ("database", DB)]),
        );
        assert!(String::from_utf8_lossy(&v2).contains("0A000"), "{v2:?}");
        // A 2 GiB length header after login → 08P01 (or 54000), then close.
        let mut msg = startup_packet(3 << 16, &[("user", USER), ("database", DB)]);
        msg.extend_from_slice(&[b'Q', 0x7f, 0xff, 0xff, 0xff]);
        let huge = raw_exchange(port, &msg);
        let text = String::from_utf8_lossy(&huge);
        assert!(text.contains("08P01") || text.contains("54000"), "{text}");
        // A startup packet claiming 2 GiB → refused.
        let big_startup = raw_exchange(port, &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]);
        assert!(
            String::from_utf8_lossy(&big_startup).contains("08P01"),
            "{big_startup:?}"
        );
    });
    // The good client keeps working while the hostile ones come and go.
    for i in 0..50 {
        let v = simple_value(&good.simple_query(&format!("SELECT {i}")).await.unwrap());
        assert_eq!(v, i.to_string());
    }
    handles.await.unwrap();
    let violations = p
        .handle()
        .shared()
        .failures
        .get(FailureClass::ProtocolViolation);
    assert!(
        violations >= 3,
        "bad version, oversized message and oversized startup are counted: {violations}"
    );
    assert_eq!(
        simple_value(&good.simple_query("SELECT 'alive'").await.unwrap()),
        "alive"
    );
    assert!(c.connection_count(Some(USER)) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_resets_state_and_statement_mode_refuses_transactions() {
    let c = cluster(Auth::ScramSha256);
    let p = PgtideBuilder::new(&c, DB)
        .set("databases.app.password", PASSWORD)
        .set("pool.max_size", "1")
        .set("pool.mode", "session")
        .start()
        .unwrap();
    {
        let a = connect(&p).await;
        a.batch_execute("SET search_path = 'nowhere'; PREPARE p AS SELECT 1")
            .await
            .unwrap();
        // Session mode keeps the same server for the client's whole connection.
        let pid1 = simple_value(&a.simple_query("SELECT pg_backend_pid()").await.unwrap());
        let pid2 = simple_value(&a.simple_query("SELECT pg_backend_pid()").await.unwrap());
        assert_eq!(pid1, pid2);
        assert_eq!(
            simple_value(&a.simple_query("SHOW search_path").await.unwrap()),
            "nowhere"
        );
    }
    // The same (only) server, reset with DISCARD ALL before the next client gets it.
    let b = connect(&p).await;
    assert_ne!(
        simple_value(&b.simple_query("SHOW search_path").await.unwrap()),
        "nowhere"
    );
    let err = b
        .batch_execute("EXECUTE p")
        .await
        .expect_err("prepared statement was discarded");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err}"
    );
    assert_eq!(c.connection_count(Some(USER)), 1);

    let s = PgtideBuilder::new(&c, DB)
        .set("databases.app.password", PASSWORD)
        .set("pool.mode", "statement")
        .start()
        .unwrap();
    let client = connect(&s).await;
    assert_eq!(
        simple_value(&client.simple_query("SELECT 'single'").await.unwrap()),
        "single"
    );
    // BEGIN's own ReadyForQuery ('T') is already on its way when pgtide sees it, so the
    // refusal (FATAL 0A000 and close) reaches the client at its next command, as in PgBouncer.
    let _ = client.batch_execute("BEGIN").await;
    let err = client
        .batch_execute("SELECT 1")
        .await
        .map(|_| ())
        .expect_err("refused");
    let db = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(
        db.contains("statement pooling mode") || err.is_closed(),
        "{err} {db}"
    );
    assert_eq!(
        s.handle()
            .shared()
            .failures
            .get(FailureClass::ProtocolViolation),
        1
    );
    // Other clients of the statement pool are unaffected.
    let other = connect(&s).await;
    assert_eq!(
        simple_value(&other.simple_query("SELECT 'fine'").await.unwrap()),
        "fine"
    );
}

/// Regression: COPY FROM STDIN through the extended protocol. PostgreSQL ignores the Sync that
/// follows the Execute while in copy-in mode, so pgtide must not wait for its ReadyForQuery, or
/// the server is never released (found in review; with one server every later client starved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_copy_in_releases_the_server() {
    use futures::SinkExt;
    let c = cluster(Auth::ScramSha256);
    let p = pgtide(&c, 1);
    let client = connect(&p).await;
    client.batch_execute("CREATE TABLE c(x int)").await.unwrap();
    for round in 0..3 {
        let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"1\n2\n"))
            .await
            .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 2, "round {round}");
        // Another client gets the single server: the copy released it.
        let other = connect(&p).await;
        let n = tokio::time::timeout(
            Duration::from_secs(3),
            other.simple_query("SELECT count(*) FROM c"),
        )
        .await
        .expect("server released after COPY")
        .unwrap();
        assert_eq!(simple_value(&n), ((round + 1) * 2).to_string());
    }
}
