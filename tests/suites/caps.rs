//! Pool sizing limits against a real server: caps shared by pools (max_db_connections,
//! max_user_connections), min_size refill, idle_timeout, max_lifetime, and the FIFO queue under
//! a 200-client overload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgtide_harness::{Auth, Cluster, Pgtide};
use pgtide_pool_core::FailureClass;
use tokio_postgres::error::SqlState;

mod common;
use common::*;

fn cluster() -> Cluster {
    app_cluster(Auth::ScramSha256)
}

fn server_conns(c: &Cluster) -> usize {
    c.connection_count(Some(USER))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_caps_all_pools_of_a_database() {
    let c = cluster();
    // Every client user logs in to the server as `app`; pools are per client user.
    let p = pgtide_with(
        &c,
        &[
            ("databases.app.user", USER),
            ("databases.app.max_db_connections", "2"),
            ("pool.acquire_timeout", "300ms"),
        ],
    );
    let bob = connect_as(&p, "bob", None).await.unwrap(); // bob's pool keeps one idle server
    let a1 = connect_as(&p, "alice", None).await.unwrap();
    let a2 = connect_as(&p, "alice", None).await.unwrap();
    a1.batch_execute("BEGIN").await.unwrap();
    // The cap is full (bob's idle + alice's one): bob's idle server is closed to make room.
    a2.batch_execute("BEGIN").await.unwrap();
    // The closed backend leaves pg_stat_activity a moment after pgtide closed its socket.
    assert!(
        wait_until(Duration::from_secs(2), || server_conns(&c) == 2).await,
        "{} server connections",
        server_conns(&c)
    );
    let pool_open: u32 = p
        .handle()
        .shared()
        .pools()
        .iter()
        .map(|pool| pool.sizes().0)
        .sum();
    assert_eq!(
        pool_open, 2,
        "pgtide itself never counted more than the cap"
    );
    let started = Instant::now();
    let err = bob
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .expect_err("cap full");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    let text = message(&err);
    assert!(
        text.contains("max_db_connections of database app (2) reached") && text.contains("waited"),
        "{text}"
    );
    assert_eq!(count(&p, FailureClass::AcquireTimeout), 1);
    assert!(server_conns(&c) <= 2);
    // Alice finishes: her now idle server is reclaimed for bob.
    a1.batch_execute("COMMIT").await.unwrap();
    let bob = connect_as(&p, "bob", None).await.unwrap();
    assert_eq!(value(&bob, "SELECT 'bob served'").await, "bob served");
    a2.batch_execute("COMMIT").await.unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || server_conns(&c) <= 2).await,
        "{} server connections",
        server_conns(&c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_caps_a_user_across_databases() {
    let c = cluster();
    let port = c.port().to_string();
    let p = pgtide_with(
        &c,
        &[
            ("databases.other.host", "127.0.0.1"),
            ("databases.other.port", &port),
            ("databases.other.dbname", DB),
            ("databases.other.password", PASSWORD),
            ("users.app.max_user_connections", "1"),
            ("pool.acquire_timeout", "300ms"),
        ],
    );
    let a = connect(&p).await;
    a.batch_execute("BEGIN").await.unwrap();
    // A pool of another database needs a server for the new client's login: the user's cap
    // is full and the only server is busy.
    let other = |p: &Pgtide| p.conn_string(USER, None, "other");
    let err = match tokio_postgres::connect(&other(&p), tokio_postgres::NoTls).await {
        Ok(_) => panic!("login needs a server and the user's cap is full"),
        Err(e) => e,
    };
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    assert!(
        message(&err).contains("max_user_connections of user app (1) reached"),
        "{}",
        message(&err)
    );
    assert_eq!(count(&p, FailureClass::AcquireTimeout), 1);
    assert_eq!(server_conns(&c), 1);
    a.batch_execute("COMMIT").await.unwrap();
    let (b, conn) = tokio_postgres::connect(&other(&p), tokio_postgres::NoTls)
        .await
        .expect("the idle server of the first pool is reclaimed");
    tokio::spawn(conn);
    assert_eq!(value(&b, "SELECT 'other db'").await, "other db");
    // The reclaimed backend leaves pg_stat_activity a moment after pgtide closed its socket.
    assert!(
        wait_until(Duration::from_secs(2), || server_conns(&c) == 1).await,
        "{} server connections",
        server_conns(&c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_size_is_kept_and_refilled_after_servers_die() {
    let c = cluster();
    let p = pgtide_with(
        &c,
        &[("pool.min_size", "2"), ("pool.evict_interval", "200ms")],
    );
    let client = connect(&p).await; // creates the pool
    assert!(
        wait_until(Duration::from_secs(5), || server_conns(&c) == 2).await,
        "min_size opened"
    );
    let pool = p.handle().shared().pools()[0].clone();
    let connects = pool
        .stats
        .connects
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(c.terminate_connections(Some(USER)).unwrap(), 2);
    assert!(
        wait_until(Duration::from_secs(5), || {
            server_conns(&c) == 2
                && pool
                    .stats
                    .connects
                    .load(std::sync::atomic::Ordering::Relaxed)
                    >= connects + 2
        })
        .await,
        "refilled to min_size with new connections"
    );
    assert_eq!(
        value(&client, "SELECT 'after refill'").await,
        "after refill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_idle_servers_down_to_min_size() {
    let c = cluster();
    let p = pgtide_with(
        &c,
        &[
            ("pool.min_size", "1"),
            ("pool.max_size", "4"),
            ("pool.idle_timeout", "500ms"),
            ("pool.evict_interval", "100ms"),
        ],
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(&p).await);
    }
    let busy = clients
        .iter()
        .map(|cl| cl.simple_query("SELECT pg_sleep(0.3)"));
    for r in futures::future::join_all(busy).await {
        r.unwrap();
    }
    assert_eq!(server_conns(&c), 4);
    assert!(
        wait_until(Duration::from_secs(5), || server_conns(&c) == 1).await,
        "idle servers above min_size closed, got {}",
        server_conns(&c)
    );
    assert_eq!(
        value(&clients[0], "SELECT 'still served'").await,
        "still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_retires_servers_once_idle() {
    let c = cluster();
    let p = pgtide_with(
        &c,
        &[
            ("pool.max_size", "1"),
            ("pool.max_lifetime", "1s"),
            ("pool.evict_interval", "100ms"),
        ],
    );
    let client = connect(&p).await;
    let first = value(&client, "SELECT pg_backend_pid()").await;
    // Inside its lifetime the same server serves again.
    assert_eq!(value(&client, "SELECT pg_backend_pid()").await, first);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = value(&client, "SELECT pg_backend_pid()").await;
    assert_ne!(first, second, "the server past max_lifetime was replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_on_five_servers_time_out_cleanly() {
    let c = cluster();
    let p = pgtide_with(
        &c,
        &[("pool.max_size", "5"), ("pool.acquire_timeout", "200ms")],
    );
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(connect(&p).await);
    }
    let runs = clients
        .iter()
        .map(|cl| cl.simple_query("SELECT pg_sleep(1)"));
    let results = futures::future::join_all(runs).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let mut timed_out = 0;
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
            let text = message(e);
            assert!(
                text.contains("pool app/app exhausted") && text.contains("client(s) waiting"),
                "{text}"
            );
            timed_out += 1;
        }
    }
    assert!(ok >= 5, "the first five are served, got {ok}");
    assert_eq!(ok + timed_out, 200);
    assert_eq!(count(&p, FailureClass::AcquireTimeout), timed_out as u64);
    let pool = p.handle().shared().pools()[0].clone();
    // A client has its answer a moment before its session gives the server back.
    let released = wait_until(Duration::from_secs(2), || {
        pool.stats.active.load(std::sync::atomic::Ordering::Relaxed) == 0
    })
    .await;
    assert!(released, "every server given back");
    assert_eq!(
        pool.stats
            .waiting
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(server_conns(&c) <= 5, "no server connection leaked");
    let fresh = connect(&p).await;
    assert_eq!(
        value(&fresh, "SELECT 'after the storm'").await,
        "after the storm"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_are_served_in_arrival_order() {
    let c = cluster();
    let p = pgtide_with(
        &c,
        &[("pool.max_size", "2"), ("pool.acquire_timeout", "20s")],
    );
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(Arc::new(connect(&p).await));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, cl) in clients.iter().enumerate() {
        let cl = cl.clone();
        tasks.push(tokio::spawn(async move {
            // Arrive in index order, 40 ms apart, while each query holds a server for 250 ms.
            tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
            cl.simple_query("SELECT pg_sleep(0.25)").await.unwrap();
            start.elapsed()
        }));
    }
    let mut finished = Vec::new();
    for t in tasks {
        finished.push(t.await.unwrap());
    }
    // FIFO: service starts in arrival order, so finish times follow it (small tolerance for
    // scheduling noise); a LIFO or random queue would reorder whole 250 ms slots.
    for i in 1..finished.len() {
        assert!(
            finished[i] + Duration::from_millis(60) >= finished[i - 1],
            "client {i} finished before client {} although it arrived later: {finished:?}",
            i - 1
        );
    }
}
