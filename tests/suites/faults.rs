//! Server faults against a real PostgreSQL: out of connection slots, stopped mid-load, stopped
//! and restarted (fail fast, then probe), and a blackholed address with clients queued.

use std::time::{Duration, Instant};

use pgtide_harness::Auth;
use pgtide_pool_core::FailureClass;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_max_connections_is_server_too_many_connections() {
    // 6 slots, 3 reserved for superusers: the app user gets 3.
    let c = app_cluster_builder(Auth::ScramSha256)
        .max_connections(6)
        .start()
        .unwrap();
    let p = pgtide_with(&c, &[]);
    let mut direct = Vec::new();
    for _ in 0..3 {
        let (client, conn) = tokio_postgres::connect(&c.conn_string(USER, PASSWORD, DB), NoTls)
            .await
            .expect("direct connection");
        tokio::spawn(conn);
        direct.push(client);
    }
    let err = match connect_as(&p, USER, None).await {
        Ok(_) => panic!("the server has no slot left"),
        Err(e) => e,
    };
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    assert!(
        message(&err).contains("refused the connection") && message(&err).contains("53300"),
        "the server's own words are passed on: {}",
        message(&err)
    );
    assert_eq!(count(&p, FailureClass::ServerTooManyConnections), 1);
    drop(direct);
    assert!(
        wait_until(Duration::from_secs(5), || c.connection_count(Some(USER))
            == 0)
        .await
    );
    let client = connect(&p).await;
    assert_eq!(value(&client, "SELECT 'slots again'").await, "slots again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_fails_fast_then_the_pool_reopens_by_itself() {
    let c = app_cluster(Auth::ScramSha256);
    let p = pgtide_with(
        &c,
        &[
            ("pgtide.breaker_threshold", "2"),
            ("pgtide.breaker_max_backoff", "500ms"),
            ("pool.acquire_timeout", "10s"),
            ("pool.connect_timeout", "5s"),
        ],
    );
    let first = connect(&p).await;
    assert_eq!(value(&first, "SELECT 1").await, "1");
    c.stop().unwrap();
    // Clients log in on the pool's cached parameters; their queries need a server.
    for attempt in 0..2 {
        let client = connect(&p).await;
        let started = Instant::now();
        let err = client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .expect_err("server down");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "attempt {attempt}: within connect_timeout, not acquire_timeout: {:?}",
            started.elapsed()
        );
        assert!(
            message(&err).contains("Connection refused"),
            "{}",
            message(&err)
        );
    }
    assert_eq!(count(&p, FailureClass::ConnectRefused), 2);
    assert!(event_kinds(&p).contains(&"breaker_open"));
    // The breaker is open: the next client fails at once with the same class, named.
    let client = connect(&p).await;
    let started = Instant::now();
    let err = client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .expect_err("fail fast");
    assert!(started.elapsed() < Duration::from_millis(500));
    let text = message(&err);
    assert!(
        text.contains("unavailable") && text.contains("connect_refused"),
        "{text}"
    );
    assert_eq!(count(&p, FailureClass::ConnectRefused), 3);
    c.start().unwrap();
    let mut served = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !served {
        let client = connect(&p).await;
        served = client.simple_query("SELECT 1").await.is_ok();
        if !served {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(served, "the pool reopened without restarting pgtide");
    assert!(event_kinds(&p).contains(&"breaker_closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_clients_fail_fast_when_connects_time_out() {
    let c = app_cluster(Auth::ScramSha256);
    // Accepts TCP connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let p = pgtide_with(
        &c,
        &[
            ("databases.app.port", &port),
            ("pool.max_size", "2"),
            ("pool.connect_timeout", "500ms"),
            ("pool.acquire_timeout", "10s"),
            ("pgtide.breaker_threshold", "2"),
        ],
    );
    let started = Instant::now();
    let logins = (0..8).map(|_| connect_as(&p, USER, None));
    let results = futures::future::join_all(logins).await;
    let elapsed = started.elapsed();
    for r in &results {
        let err = r.as_ref().map(|_| ()).expect_err("no server");
        assert!(
            message(err).contains("timed out") || message(err).contains("connect_timeout"),
            "{}",
            message(err)
        );
    }
    // Two connects time out after 500 ms and open the breaker; the six queued behind them get
    // the same class at once instead of waiting out acquire_timeout (10 s).
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(count(&p, FailureClass::ConnectTimeout), 8);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_shutdown_mid_load_is_classified_and_the_pool_refills() {
    let c = app_cluster(Auth::ScramSha256);
    let p = pgtide_with(
        &c,
        &[
            ("pool.min_size", "2"),
            ("pool.max_size", "4"),
            ("pool.evict_interval", "200ms"),
            ("pgtide.breaker_max_backoff", "500ms"),
        ],
    );
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(connect(&p).await);
    }
    let load = clients.into_iter().map(|cl| async move {
        // Bounded: at most 200 queries or until the first error.
        for _ in 0..200 {
            if cl.simple_query("SELECT pg_sleep(0.05)").await.is_err() {
                return true;
            }
        }
        false
    });
    let load = tokio::spawn(futures::future::join_all(load));
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.stop().unwrap();
    let failed = load.await.unwrap().into_iter().filter(|f| *f).count();
    assert!(failed > 0, "clients mid-query saw the shutdown");
    let classified =
        count(&p, FailureClass::ServerShutdown) + count(&p, FailureClass::ServerConnLost);
    assert!(classified >= 1, "shutdown/conn_lost counted");
    c.start().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || c.connection_count(Some(USER))
            >= 2)
        .await,
        "the pool refilled to min_size once the server was back"
    );
    let client = connect(&p).await;
    assert_eq!(value(&client, "SELECT 'back'").await, "back");
}
