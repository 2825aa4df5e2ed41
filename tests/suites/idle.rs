//! Idle clients: parked sessions (client/park.rs) wake on their client's next message, on its
//! disconnect and at shutdown, and stay counted against max_client_conn exactly while they
//! exist.

use std::time::Duration;

use pgtide_harness::{Auth, Cluster, Pgtide};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

mod common;
use common::*;

fn cluster() -> Cluster {
    app_cluster(Auth::ScramSha256)
}

/// Longer than two of pgtide's park periods (1 s each): a session parks once a whole period
/// passed without a message, so after 1 to 2 s of quiet.
const PARKED: Duration = Duration::from_millis(2500);

/// A woken session answers well within this.
const WAKE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_sessions_wake_on_a_multi_thread_runtime_too() {
    let c = cluster();
    let p = pgtide_with(&c, &[("pool.max_size", "2"), ("pgtide.workers", "2")]);
    let clients = [connect(&p).await, connect(&p).await, connect(&p).await];
    tokio::time::sleep(PARKED).await;
    for (i, client) in clients.iter().enumerate() {
        let got = tokio::time::timeout(WAKE, value(client, &format!("SELECT {i}")))
            .await
            .expect("a parked session wakes on its client's query");
        assert_eq!(got, i.to_string());
    }
}

/// A client that closes its socket without a Terminate while its session is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_that_vanishes_frees_its_slot() {
    use std::io::Write;
    let c = cluster();
    let p = pgtide_with(&c, &[("pgtide.max_client_conn", "1")]);
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    raw.set_read_timeout(Some(WAKE)).unwrap();
    raw.write_all(&startup_packet(
        3 << 16,
        &[("user", USER), ("database", DB)],
    ))
    .unwrap();
    read_until_ready(&mut raw, 1);
    let over = connect_as(&p, USER, None)
        .await
        .map(|_| ())
        .expect_err("limit 1");
    assert_eq!(over.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{over}");
    tokio::time::sleep(PARKED).await;
    // No Terminate: the socket just closes (FIN), as when a client process is killed.
    raw.shutdown(std::net::Shutdown::Both).unwrap();
    drop(raw);
    let again = connect_when_free(&p)
        .await
        .expect("the vanished client's slot is free again");
    assert_eq!(value(&again, "SELECT 'in'").await, "in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_sessions_wake_keep_their_settings_and_serve_transactions() {
    let c = cluster();
    let p = pgtide_with(&c, &[("pool.max_size", "2")]);
    let clients = [connect(&p).await, connect(&p).await, connect(&p).await];
    for (i, client) in clients.iter().enumerate() {
        client
            .batch_execute(&format!("SET application_name = 'idle_{i}'"))
            .await
            .unwrap();
    }
    // Parked right after login and again after PARKED of silence; each wakes on its query.
    for round in 0..2 {
        tokio::time::sleep(PARKED).await;
        for (i, client) in clients.iter().enumerate() {
            // Bounded: a lost wake-up must fail the test, not hang it.
            let name = tokio::time::timeout(WAKE, value(client, "SHOW application_name"))
                .await
                .expect("a parked session wakes on its client's query");
            assert_eq!(name, format!("idle_{i}"), "round {round}");
            let tx = format!("BEGIN; SELECT {i}; COMMIT");
            tokio::time::timeout(WAKE, client.batch_execute(&tx))
                .await
                .expect("woken in time")
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_that_leaves_frees_its_max_client_conn_slot() {
    let c = cluster();
    let p = pgtide_with(&c, &[("pgtide.max_client_conn", "2")]);
    let a = connect(&p).await;
    let b = connect(&p).await;
    let over = connect_as(&p, USER, None)
        .await
        .map(|_| ())
        .expect_err("a third client is over max_client_conn");
    assert_eq!(over.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{over}");
    tokio::time::sleep(PARKED).await;
    // `b` leaves (Terminate, then close) while parked: the hub wakes, the session ends, the
    // slot frees.
    drop(b);
    let third = connect_when_free(&p)
        .await
        .expect("the slot of the client that left is free again");
    assert_eq!(value(&third, "SELECT 'in'").await, "in");
    assert_eq!(value(&a, "SELECT 'still here'").await, "still here");
}

/// Connects as soon as a client slot is free again (up to 5 s): a session that ends frees its
/// slot a moment after its client left.
async fn connect_when_free(p: &Pgtide) -> Option<tokio_postgres::Client> {
    for _ in 0..50 {
        if let Ok(client) = connect_as(p, USER, None).await {
            return Some(client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Stops `p` (its drop drains and joins the pgtide thread) off the async threads.
async fn stop(p: Pgtide) {
    tokio::task::spawn_blocking(move || drop(p)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_parked_and_waiting_clients_57p01() {
    let c = cluster();
    let p = pgtide_with(&c, &[]);
    let mut conns = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, conn) = tokio_postgres::connect(&p.conn_string(USER, None, DB), NoTls)
            .await
            .unwrap();
        conns.push(tokio::spawn(conn));
        clients.push(client);
    }
    // The first has run a query (so it waits in its task, not parked yet); the others are
    // parked since login.
    assert_eq!(value(&clients[0], "SELECT 1").await, "1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    stop(p).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle clients do not hold up the drain: {:?}",
        started.elapsed()
    );
    for conn in conns {
        let err = conn
            .await
            .unwrap()
            .expect_err("the connection ends with pgtide's FATAL");
        assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    }
}

/// A reload that turns `client_idle_timeout` on reaches a session that is still in its task
/// (its client spoke within the park period): at its next idle point the session stops being
/// parkable, waits under the new timeout and is closed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turning_client_idle_timeout_on_reaches_a_session_in_its_task() {
    let c = cluster();
    let p = pgtide_with(&c, &[]);
    let client = connect(&p).await;
    assert_eq!(value(&client, "SELECT 1").await, "1");
    let mut config = (*p.handle().shared().config()).clone();
    config.pool.client_idle_timeout = Duration::from_millis(300).into();
    p.handle().reload(config).expect("reload");
    // The park period that saw the query ends within 1 s; the session then switches and its
    // idle timeout (300 ms) closes it.
    tokio::time::sleep(PARKED).await;
    let err = client
        .simple_query("SELECT 2")
        .await
        .map(|_| ())
        .expect_err("closed by client_idle_timeout");
    assert!(
        err.is_closed() || err.code() == Some(&SqlState::IDLE_SESSION_TIMEOUT),
        "{err}"
    );
    let fresh = connect(&p).await;
    assert_eq!(value(&fresh, "SELECT 'after'").await, "after");
}
