//! Helpers every integration suite shares: the `app` database and user on a harness cluster,
//! pgtide in front of it, and clients (tokio-postgres, psql) through it. Included with
//! `mod common;`; each suite uses a subset, hence the dead-code allowance.
#![allow(dead_code)]

pub mod drivers;
pub mod raw;

use std::process::Command;

use pgtide_harness::{pg_command, Auth, Cluster, ClusterBuilder, Pgtide, PgtideBuilder};
use pgtide_pool_core::FailureClass;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The application user (with a password) and the database it owns.
pub const USER: &str = "app";
pub const PASSWORD: &str = "secret";
pub const DB: &str = "app";

/// A cluster builder with the app user and database, authenticated by `auth`.
pub fn app_cluster_builder(auth: Auth) -> ClusterBuilder {
    Cluster::builder()
        .auth(auth)
        .user(USER, PASSWORD)
        .database_owned_by(DB, USER)
}

/// A started cluster with the app user and database.
pub fn app_cluster(auth: Auth) -> Cluster {
    app_cluster_builder(auth).start().expect("cluster starts")
}

/// pgtide (trust for clients, transaction mode unless set) in front of `cluster`, logging in
/// to the server with the app password, with `settings` as `--set` pairs.
pub fn pgtide_with(cluster: &Cluster, settings: &[(&str, &str)]) -> Pgtide {
    let mut b = PgtideBuilder::new(cluster, DB).set("databases.app.password", PASSWORD);
    for (k, v) in settings {
        b = b.set(k, v);
    }
    b.start().expect("pgtide starts")
}

/// A tokio-postgres client through pgtide as `user`.
pub async fn connect_as(
    p: &Pgtide,
    user: &str,
    password: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&p.conn_string(user, password, DB), NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A tokio-postgres client through pgtide as the app user.
pub async fn connect(p: &Pgtide) -> Client {
    connect_as(p, USER, None)
        .await
        .expect("connect through pgtide")
}

/// The first column of the first row of a simple query's answer.
pub fn simple_value(rows: &[SimpleQueryMessage]) -> String {
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

/// Runs `sql` and returns its first value.
pub async fn value(c: &Client, sql: &str) -> String {
    simple_value(&c.simple_query(sql).await.unwrap())
}

/// The server's message for a database error, or the error's text.
pub fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

/// Failures of `class` counted by pgtide.
pub fn count(p: &Pgtide, class: FailureClass) -> u64 {
    p.handle().shared().failures.get(class)
}

/// psql through pgtide as the app user, unaligned and tuples-only; callers add input and stdio.
pub fn psql_command(p: &Pgtide) -> Command {
    let mut cmd = pg_command("psql");
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-p",
        &p.port().to_string(),
        "-U",
        USER,
        DB,
    ]);
    cmd
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The kinds of the events in pgtide's ring, oldest first.
pub fn event_kinds(p: &Pgtide) -> Vec<&'static str> {
    p.handle()
        .shared()
        .events
        .recent(usize::MAX)
        .iter()
        .map(|e| e.kind.as_str())
        .collect()
}

/// A StartupMessage for protocol `version` with `params`, for tests that speak the protocol
/// over a raw socket.
pub fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    pkt
}

/// A protocol message: tag, length, body.
pub fn raw_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads whole messages until `count` ReadyForQuery have arrived; returns (tag, body) pairs.
pub fn read_until_ready(s: &mut std::net::TcpStream, count: usize) -> Vec<(u8, Vec<u8>)> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut ready = 0;
    while ready < count {
        let mut head = [0u8; 5];
        s.read_exact(&mut head)
            .expect("a message header before the read timeout");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).expect("the message body");
        if head[0] == b'Z' {
            ready += 1;
        }
        out.push((head[0], body));
    }
    out
}

/// pgbench through pgtide on `port` as the app user: `clients` clients (one thread each) running
/// `sql` for `secs`, in the background; joins to pgbench's output (panics when it fails).
pub fn pgbench_sql(
    port: u16,
    clients: u32,
    secs: u32,
    sql: &str,
) -> std::thread::JoinHandle<String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let script = std::env::temp_dir().join(format!("pgtide-bench-{}-{n}.sql", std::process::id()));
    std::fs::write(&script, format!("{sql}\n")).expect("write the pgbench script");
    std::thread::spawn(move || {
        let out = pg_command("pgbench")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, "-n"])
            .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
            .args(["-T", &secs.to_string()])
            .arg("-f")
            .arg(&script)
            .arg(DB)
            .output()
            .expect("pgbench runs");
        let _ = std::fs::remove_file(&script);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pgbench failed:\n{text}");
        text
    })
}
