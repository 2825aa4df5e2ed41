//! Tests of the PostgreSQL harness itself: every other suite trusts that a cluster starts with
//! the asked-for auth, TLS and limits, survives stop/start/kill9, and leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use pgtide_harness::{pid_alive, psql, Auth, Cluster};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Connects with tokio-postgres and drives the connection on the test's runtime.
async fn connect(dsn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn select_one(client: &Client) -> i32 {
    client
        .query_one("SELECT 1", &[])
        .await
        .expect("SELECT 1")
        .get(0)
}

fn sqlstate(err: &tokio_postgres::Error) -> Option<&SqlState> {
    err.code()
}

/// Starts a cluster with `auth`, user `app` and database `app`, and checks the right password
/// gets in; returns the cluster for further checks.
async fn cluster_accepting(auth: Auth, password: &str) -> Cluster {
    let pg = Cluster::builder()
        .auth(auth)
        .user("app", password)
        .database("app")
        .start()
        .expect("cluster starts");
    let client = connect(&pg.conn_string("app", password, "app"))
        .await
        .unwrap_or_else(|e| panic!("{auth:?}: connect: {e}\n{}", pg.log_tail(20)));
    assert_eq!(select_one(&client).await, 1);
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "app");
    pg
}

async fn assert_wrong_password_refused(pg: &Cluster) {
    let err = connect(&pg.conn_string("app", "wrong", "app"))
        .await
        .expect_err("a wrong password must be refused");
    assert_eq!(sqlstate(&err), Some(&SqlState::INVALID_PASSWORD), "{err}");
}

#[tokio::test]
async fn trust_cluster_answers_and_ignores_passwords() {
    let pg = cluster_accepting(Auth::Trust, "secret").await;
    let client = connect(&pg.conn_string("app", "anything", "app"))
        .await
        .expect("trust ignores the password");
    assert_eq!(select_one(&client).await, 1);
}

#[tokio::test]
async fn md5_cluster_stores_md5_secrets_and_refuses_wrong_password() {
    let pg = cluster_accepting(Auth::Md5, "secret").await;
    let stored = pg
        .superuser_psql("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'app'")
        .unwrap();
    assert_eq!(stored, "md5", "md5 auth must really be md5, not SCRAM");
    assert_eq!(
        pg.superuser_psql("SHOW password_encryption").unwrap(),
        "md5"
    );
    assert_wrong_password_refused(&pg).await;
}

#[tokio::test]
async fn scram_cluster_answers_and_refuses_wrong_password() {
    // A password that needs quoting in key=value form and percent-encoding in a URL.
    let password = "s3cr3t w@rd/'x";
    let pg = cluster_accepting(Auth::ScramSha256, password).await;
    let stored = pg
        .superuser_psql("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'app'")
        .unwrap();
    assert_eq!(stored, "SCRAM-SHA-256$");
    let client = connect(&pg.url("app", password, "app"))
        .await
        .expect("the URL form works too");
    assert_eq!(select_one(&client).await, 1);
    assert_wrong_password_refused(&pg).await;
}

#[tokio::test]
async fn password_cluster_answers_and_refuses_wrong_password() {
    let pg = cluster_accepting(Auth::Password, "secret").await;
    assert_wrong_password_refused(&pg).await;
}

#[test]
fn settings_and_database_owner_are_applied() {
    let pg = Cluster::builder()
        .user("app", "secret")
        .user("other", "secret")
        .database("app")
        .database_owned_by("reports", "other")
        .setting("log_min_messages", "warning")
        .setting("cluster_name", "it's the harness")
        .bench_profile()
        .start()
        .expect("cluster starts");
    let show = |name: &str| pg.superuser_psql(&format!("SHOW {name}")).unwrap();
    assert_eq!(show("log_min_messages"), "warning");
    assert_eq!(show("cluster_name"), "it's the harness");
    assert_eq!(show("fsync"), "off");
    assert_eq!(show("synchronous_commit"), "off");
    assert_eq!(show("full_page_writes"), "off");
    assert_eq!(show("port"), pg.port().to_string());
    assert_eq!(show("listen_addresses"), "127.0.0.1");
    let owners = pg
        .superuser_psql(
            "SELECT string_agg(datname || '=' || pg_get_userbyid(datdba), ',' ORDER BY datname) \
             FROM pg_database WHERE datname IN ('app', 'reports')",
        )
        .unwrap();
    assert_eq!(owners, "app=app,reports=other");
    assert!(pg.socket_dir().starts_with(pg.root_dir()));
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    assert!(pg.log_path().is_file());
}

#[test]
fn tls_cluster_serves_tls_with_a_verifiable_certificate() {
    let pg = Cluster::builder()
        .tls(true)
        .user("app", "secret")
        .database("app")
        .start()
        .expect("TLS cluster starts");
    assert_eq!(pg.superuser_psql("SHOW ssl").unwrap(), "on");
    let cert = pg.tls_cert_path().expect("a TLS cluster has a certificate");
    assert!(cert.is_file());
    assert!(pg.tls_key_path().is_some_and(|k| k.is_file()));

    let on_tls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let dsn = pg.conn_string("app", "secret", "app");
    assert_eq!(
        psql(&format!("{dsn} sslmode=require"), on_tls).unwrap(),
        "t"
    );
    let verify = format!(
        "{dsn} sslmode=verify-full sslrootcert={}",
        pgtide_harness::conninfo_value(&cert.to_string_lossy())
    );
    assert_eq!(psql(&verify, on_tls).unwrap(), "t");
    // Plain TCP is still allowed unless require_tls is set.
    assert_eq!(
        psql(&format!("{dsn} sslmode=disable"), on_tls).unwrap(),
        "f"
    );
}

#[tokio::test]
async fn require_tls_refuses_plain_tcp() {
    let pg = Cluster::builder()
        .require_tls(true)
        .user("app", "secret")
        .database("app")
        .start()
        .expect("TLS cluster starts");
    let dsn = pg.conn_string("app", "secret", "app");
    let err = connect(&dsn).await.expect_err("plain TCP is refused");
    assert_eq!(
        sqlstate(&err),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );
    assert_eq!(
        psql(&format!("{dsn} sslmode=require"), "SELECT 1").unwrap(),
        "1"
    );
}

#[tokio::test]
async fn stop_and_start_keep_the_port() {
    let pg = cluster_accepting(Auth::ScramSha256, "secret").await;
    let dsn = pg.conn_string("app", "secret", "app");
    let port = pg.port();

    pg.stop().expect("stop");
    assert!(!pg.is_running());
    pg.stop().expect("stopping a stopped cluster is a no-op");
    assert!(connect(&dsn).await.is_err(), "no server while stopped");

    pg.start().expect("start again");
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_eq!(
        select_one(&connect(&dsn).await.expect("reconnect")).await,
        1
    );
    assert!(
        pg.start().is_err(),
        "starting a running cluster is an error"
    );

    pg.restart().expect("restart");
    assert_eq!(
        select_one(&connect(&dsn).await.expect("after restart")).await,
        1
    );
}

#[tokio::test]
async fn kill9_kills_everything_and_start_recovers() {
    let pg = cluster_accepting(Auth::ScramSha256, "secret").await;
    let dsn = pg.conn_string("app", "secret", "app");
    let held = connect(&dsn).await.expect("a connection to lose");
    let pm = pg
        .postmaster_pid()
        .expect("running cluster has a postmaster");
    let backend: i32 = held
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    pg.kill9().expect("kill9");
    assert!(!pid_alive(pm), "postmaster {pm} survived kill9");
    assert!(
        !pid_alive(backend as u32),
        "backend {backend} survived kill9"
    );
    assert!(!pg.is_running());
    assert!(held.query_one("SELECT 1", &[]).await.is_err());
    assert!(connect(&dsn).await.is_err(), "no server after kill9");

    pg.start().expect("start after kill9 (crash recovery)");
    assert_ne!(pg.postmaster_pid(), Some(pm));
    assert_eq!(
        select_one(&connect(&dsn).await.expect("after kill9")).await,
        1
    );
}

#[test]
fn drop_stops_the_server_and_removes_the_directory() {
    let pg = Cluster::builder().start().expect("cluster starts");
    let pm = pg.postmaster_pid().expect("postmaster pid");
    let root = pg.root_dir().to_path_buf();
    assert!(pid_alive(pm));
    drop(pg);
    assert!(!pid_alive(pm), "postmaster {pm} outlived its Cluster");
    assert!(!root.exists(), "{} outlived its Cluster", root.display());
}

#[test]
fn panicking_test_still_cleans_up() {
    let mut seen: Option<(u32, PathBuf)> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let pg = Cluster::builder().start().expect("cluster starts");
        seen = Some((pg.postmaster_pid().unwrap(), pg.root_dir().to_path_buf()));
        panic!("test body fails while holding a cluster");
    }));
    assert!(result.is_err());
    let (pm, root) = seen.expect("the closure got as far as starting the cluster");
    assert!(!pid_alive(pm), "postmaster {pm} outlived a panic");
    assert!(!root.exists(), "{} outlived a panic", root.display());
}

#[tokio::test]
async fn max_connections_refuses_with_53300() {
    // 6 slots, 3 reserved for superusers: ordinary users get 3.
    let pg = Cluster::builder()
        .max_connections(6)
        .user("app", "secret")
        .database("app")
        .start()
        .expect("cluster starts");
    let dsn = pg.conn_string("app", "secret", "app");
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(
            connect(&dsn)
                .await
                .unwrap_or_else(|e| panic!("connection {i}: {e}")),
        );
    }
    let err = connect(&dsn).await.expect_err("the 4th must be refused");
    assert_eq!(
        sqlstate(&err),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{err}"
    );

    // The superuser still gets in through the reserved slots.
    assert_eq!(pg.connection_count(Some("app")), 3);
    assert_eq!(pg.connection_count(None), 3);
    assert_eq!(pg.terminate_connections(Some("app")).unwrap(), 3);
    for client in &held {
        assert!(client.query_one("SELECT 1", &[]).await.is_err());
    }
    // Terminated backends leave pg_stat_activity asynchronously.
    for _ in 0..200 {
        if pg.connection_count(Some("app")) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pg.connection_count(Some("app")), 0);
    assert_eq!(
        select_one(&connect(&dsn).await.expect("slot freed")).await,
        1
    );
}

/// Env var telling a re-executed copy of this binary to act as the "killed test process".
const CHILD_ENV: &str = "PGTIDE_HARNESS_SWEEP_CHILD";

/// Not a test on its own: when [`stale_clusters_of_killed_processes_are_swept`] re-runs this
/// binary with `CHILD_ENV` set, it starts a cluster, reports it and waits to be SIGKILLed.
#[test]
fn sweep_child_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let pg = Cluster::builder().start().expect("child cluster starts");
    println!(
        "CLUSTER {} {}",
        pg.postmaster_pid().unwrap(),
        pg.root_dir().display()
    );
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn stale_clusters_of_killed_processes_are_swept() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sweep_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("re-run this test binary");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let (pm, root) = loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read child output");
        assert!(n > 0, "child exited before reporting its cluster");
        // libtest prints "test sweep_child_process ... " before the test's own output.
        if let Some((_, rest)) = line.trim().split_once("CLUSTER ") {
            let (pid, dir) = rest.split_once(' ').unwrap();
            break (pid.parse::<u32>().unwrap(), PathBuf::from(dir));
        }
    };
    assert!(pid_alive(pm) && root.exists());

    child.kill().expect("SIGKILL the child test process");
    child.wait().unwrap();
    // Its Drop never ran: the server and directory are orphaned until a sweep.
    assert!(
        pid_alive(pm),
        "the orphaned postmaster should still be running"
    );

    // (Another test process may sweep it first; either way it must be gone afterwards.)
    pgtide_harness::sweep_stale_clusters();
    assert!(!pid_alive(pm), "sweep left postmaster {pm} running");
    assert!(!root.exists(), "sweep left {}", root.display());
}
