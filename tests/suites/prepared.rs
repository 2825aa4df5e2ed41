//! Named prepared statements in transaction mode: pgbench -M prepared, tokio-postgres, asyncpg
//! and psycopg 3 with their defaults, statement names that collide between clients, and
//! statements whose server died.

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use pgtide_harness::{pg_command, Auth, Cluster, Pgtide};

mod common;
use common::drivers::{manifest_dir, python, text};
use common::*;

fn cluster() -> Cluster {
    app_cluster(Auth::ScramSha256)
}

/// pgtide in transaction mode with a small pool, so clients move between servers.
fn pooled(c: &Cluster, max_size: &str) -> Pgtide {
    pgtide_with(
        c,
        &[("pool.mode", "transaction"), ("pool.max_size", max_size)],
    )
}

fn pgbench(port: u16, args: &[&str]) -> std::process::Output {
    pg_command("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
        .env("PGPASSWORD", PASSWORD)
        .args(args)
        .arg(DB)
        .output()
        .expect("pgbench runs")
}

#[test]
fn pgbench_prepared_with_20_clients_runs_clean() {
    let c = cluster();
    let init = pgbench(c.port(), &["-i", "-q", "-s", "1"]);
    assert!(init.status.success(), "{}", text(&init));
    let p = pooled(&c, "3");
    // -j = -c: pgbench prepares with a blocking call per thread (see the brief's pgbench trap).
    for script in [&["-S"][..], &["-N"][..]] {
        let out = pgbench(
            p.port(),
            &[
                &["-M", "prepared", "-c", "20", "-j", "20", "-t", "50"],
                script,
            ]
            .concat(),
        );
        let t = text(&out);
        assert!(out.status.success(), "pgbench {script:?} failed:\n{t}");
        assert!(
            t.contains("number of transactions actually processed: 1000/1000"),
            "{t}"
        );
        assert!(
            !t.contains("does not exist") && !t.contains("already exists"),
            "{t}"
        );
    }
    assert!(c.connection_count(Some(USER)) <= 3);
    let pool = p.handle().shared().pools()[0].clone();
    assert!(pool.statements.live() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_prepared_statements_follow_the_client_across_servers() {
    let c = cluster();
    let p = pooled(&c, "3");
    let client = connect(&p).await;
    let stmt = client
        .prepare("SELECT $1::int + 1, pg_backend_pid()")
        .await
        .unwrap();
    // Other clients hold servers in turn, so `client` keeps landing on different ones.
    let holders: Vec<_> = futures::future::join_all((0..2).map(|_| connect_as(&p, USER, None)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut pids = HashSet::new();
    for i in 0..60i32 {
        let holder = &holders[(i % 2) as usize];
        let hold = (i % 3 != 0).then(|| holder.batch_execute("BEGIN; SELECT pg_sleep(0.002)"));
        if let Some(h) = hold {
            h.await.unwrap();
        }
        let row = client.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        pids.insert(row.get::<_, i32>(1));
        if i % 3 != 0 {
            holder.batch_execute("COMMIT").await.unwrap();
        }
    }
    assert!(
        pids.len() >= 2,
        "the statement ran on several servers: {pids:?}"
    );
    // Prepared in one transaction, executed in later ones.
    let tx_stmt = {
        client.batch_execute("BEGIN").await.unwrap();
        let s = client.prepare("SELECT $1::text || '!'").await.unwrap();
        client.batch_execute("COMMIT").await.unwrap();
        s
    };
    for i in 0..10 {
        let row = client.query_one(&tx_stmt, &[&i.to_string()]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), format!("{i}!"));
    }
    let pool = p.handle().shared().pools()[0].clone();
    assert!(pool.statements.reprepares.load(Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_statement_name_for_different_sql_never_mixes() {
    let c = cluster();
    let p = pooled(&c, "2");
    let a = connect(&p).await;
    let b = connect(&p).await;
    // tokio-postgres names each client's first statement `s0`: the same name, other SQL.
    let sa = a.prepare("SELECT 'from a'::text").await.unwrap();
    let sb = b
        .prepare("SELECT 'from b'::text || $1::text")
        .await
        .unwrap();
    for i in 0..40 {
        let suffix = i.to_string();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&suffix];
        let (ra, rb) = tokio::join!(a.query_one(&sa, &[]), b.query_one(&sb, &params));
        assert_eq!(ra.unwrap().get::<_, String>(0), "from a");
        assert_eq!(rb.unwrap().get::<_, String>(0), format!("from b{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_re_prepared_when_its_server_dies() {
    let c = cluster();
    let p = pooled(&c, "2");
    let client = connect(&p).await;
    let stmt = client.prepare("SELECT $1::int * 10").await.unwrap();
    assert_eq!(
        client
            .query_one(&stmt, &[&1i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        10
    );
    assert!(c.terminate_connections(Some(USER)).unwrap() >= 1);
    let pool = p.handle().shared().pools()[0].clone();
    let before = pool.statements.reprepares.load(Relaxed);
    // The idle server is dead; the next transaction gets a new one and the statement follows.
    assert!(
        wait_until(Duration::from_secs(5), || c.connection_count(Some(USER))
            == 0)
        .await,
        "terminated"
    );
    assert_eq!(
        client
            .query_one(&stmt, &[&2i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        20
    );
    assert!(pool.statements.reprepares.load(Relaxed) > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_is_refused_with_a_clear_error_and_deallocate_all_stays_in_step() {
    let c = cluster();
    let p = pooled(&c, "2");
    let client = connect(&p).await;
    let err = client
        .batch_execute("PREPARE q AS SELECT 1")
        .await
        .expect_err("refused");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
    );
    assert!(
        message(&err).contains("not supported in transaction pooling mode"),
        "{}",
        message(&err)
    );
    let stmt = client.prepare("SELECT 42").await.unwrap();
    assert_eq!(
        client.query_one(&stmt, &[]).await.unwrap().get::<_, i32>(0),
        42
    );
    // DEALLOCATE ALL from the client: pgtide forgets the server's statements too, so the next
    // Parse of the same SQL is prepared again instead of failing with "already exists".
    client.batch_execute("DEALLOCATE ALL").await.unwrap();
    let again = client.prepare("SELECT 42").await.unwrap();
    assert_eq!(
        client
            .query_one(&again, &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );
}

fn run_driver(script: &str, dsn: String) -> serde_json::Value {
    let path = manifest_dir().join("drivers").join(script);
    let out = Command::new(python())
        .arg(path)
        .args([dsn.as_str(), "4", "60"])
        .output()
        .expect("driver script runs");
    let t = text(&out);
    assert!(out.status.success(), "{script} failed:\n{t}");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {t}"));
    assert_eq!(v["ok"], true, "{t}");
    assert_eq!(v["transactions"], 240, "{t}");
    v
}

#[test]
fn asyncpg_with_its_default_statement_cache() {
    let c = cluster();
    let p = pooled(&c, "2");
    let dsn = format!("postgresql://{USER}@127.0.0.1:{}/{DB}", p.port());
    let v = run_driver("asyncpg_workload.py", dsn);
    assert!(v["max_servers_per_client"].as_u64().unwrap() >= 2, "{v}");
    assert!(c.connection_count(Some(USER)) <= 2);
}

#[test]
fn psycopg3_with_its_default_prepare_threshold() {
    let c = cluster();
    let p = pooled(&c, "2");
    let dsn = format!("host=127.0.0.1 port={} user={USER} dbname={DB}", p.port());
    let v = run_driver("psycopg_workload.py", dsn);
    assert!(v["max_servers_per_client"].as_u64().unwrap() >= 2, "{v}");
    let pool = p.handle().shared().pools()[0].clone();
    assert!(pool.statements.live() >= 1, "psycopg prepared statements");
}

/// Statement tracking keeps an incomplete client frame back until it is whole. The server must
/// stay with the client until then: a client that pipelines a short query and a long one whose
/// second half arrives after the first query's answer must get both answers, in order, from
/// one unbroken stream (a server released in between would lose the first half).
#[test]
fn a_pipelined_query_split_across_reads_is_not_cut_by_a_release() {
    use std::io::Write;
    let c = cluster();
    let p = pooled(&c, "2");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let packet = startup_packet(3 << 16, &[("user", USER), ("database", DB)]);
    s.write_all(&packet).unwrap();
    read_until_ready(&mut s, 1);

    let long_sql = format!("SELECT length('{}')\0", "x".repeat(30_000));
    let first = raw_message(b'Q', b"SELECT 1\0");
    let second = raw_message(b'Q', long_sql.as_bytes());
    // The short query and the start of the long one in one write; the rest once the short
    // query has surely been answered.
    let mut burst = first.clone();
    burst.extend_from_slice(&second[..100]);
    s.write_all(&burst).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&second[100..]).unwrap();
    let answers = read_until_ready(&mut s, 2);
    let rows: Vec<String> = answers
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, body)| String::from_utf8_lossy(&body[6..]).into_owned())
        .collect();
    assert_eq!(rows, ["1", "30000"], "answers: {answers:?}");
    assert!(
        !answers.iter().any(|(t, _)| *t == b'E'),
        "no error expected: {answers:?}"
    );
    // The session goes on normally afterwards.
    s.write_all(&raw_message(b'Q', b"SELECT 2\0")).unwrap();
    let answers = read_until_ready(&mut s, 1);
    assert!(answers.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"2")));
}
