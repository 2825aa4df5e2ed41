//! Limits and timeouts fire, name themselves, are counted, and the pool recovers.

use std::time::{Duration, Instant};

use pgtide_harness::{free_port, Auth, Cluster, Pgtide};
use pgtide_pool_core::FailureClass;
use tokio_postgres::error::SqlState;

mod common;
use common::*;

fn cluster() -> Cluster {
    app_cluster(Auth::ScramSha256)
}

fn pgtide(c: &Cluster, settings: &[(&str, &str)]) -> Pgtide {
    pgtide_with(c, settings)
}

async fn try_connect(p: &Pgtide) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_as(p, USER, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_and_the_server_is_reused() {
    let c = cluster();
    let p = pgtide(
        &c,
        &[("pool.query_timeout", "500ms"), ("pool.max_size", "1")],
    );
    let client = connect(&p).await;
    let started = Instant::now();
    let err = client
        .simple_query("SELECT pg_sleep(10)")
        .await
        .map(|_| ())
        .expect_err("cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&p, FailureClass::QueryTimeout), 1);
    assert_eq!(value(&client, "SELECT 'recovered'").await, "recovered");
    assert_eq!(
        c.connection_count(Some("app")),
        1,
        "the same server serves on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_set_on_the_server_and_classified() {
    let c = cluster();
    let p = pgtide(&c, &[("pool.statement_timeout", "300ms")]);
    let client = connect(&p).await;
    let err = client
        .simple_query("SELECT pg_sleep(5)")
        .await
        .map(|_| ())
        .expect_err("timed out");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        message(&err).contains("statement timeout"),
        "{}",
        message(&err)
    );
    assert_eq!(count(&p, FailureClass::StatementTimeout), 1);
    assert_eq!(value(&client, "SELECT 'ok'").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_idle_timeout_closes_idle_clients() {
    let c = cluster();
    let p = pgtide(&c, &[("pool.client_idle_timeout", "300ms")]);
    let client = connect(&p).await;
    assert_eq!(value(&client, "SELECT 1").await, "1");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let err = client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .expect_err("closed");
    assert!(
        err.is_closed() || err.code() == Some(&SqlState::IDLE_SESSION_TIMEOUT),
        "{err}"
    );
    assert_eq!(count(&p, FailureClass::ClientIdleTimeout), 1);
    let fresh = connect(&p).await;
    assert_eq!(value(&fresh, "SELECT 'new client'").await, "new client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_timeout_rolls_back_and_frees_the_server() {
    let c = cluster();
    let p = pgtide(
        &c,
        &[
            ("pool.idle_in_transaction_timeout", "300ms"),
            ("pool.max_size", "1"),
        ],
    );
    let client = connect(&p).await;
    client.batch_execute("CREATE TABLE t(x int)").await.unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let err = client
        .simple_query("COMMIT")
        .await
        .map(|_| ())
        .expect_err("closed");
    assert!(
        err.is_closed() || err.code() == Some(&SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT),
        "{err}"
    );
    assert_eq!(count(&p, FailureClass::IdleInTransactionTimeout), 1);
    // The single server slot is free again and the insert was rolled back.
    let other = connect(&p).await;
    assert_eq!(value(&other, "SELECT count(*) FROM t").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_timeout_names_the_pool_and_the_wait() {
    let c = cluster();
    let p = pgtide(
        &c,
        &[("pool.max_size", "1"), ("pool.acquire_timeout", "200ms")],
    );
    let holder = connect(&p).await;
    holder.batch_execute("BEGIN").await.unwrap(); // holds the only server
    let waiter = connect(&p).await;
    let started = Instant::now();
    let err = waiter
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .expect_err("pool exhausted");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    let text = message(&err);
    assert!(text.contains("pool app/app exhausted"), "{text}");
    assert!(
        text.contains("acquire_timeout 200ms") && text.contains("waited"),
        "{text}"
    );
    assert_eq!(count(&p, FailureClass::AcquireTimeout), 1);
    holder.batch_execute("COMMIT").await.unwrap();
    let later = connect(&p).await;
    assert_eq!(value(&later, "SELECT 'served'").await, "served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_refuses_at_once() {
    let c = cluster();
    let p = pgtide(&c, &[("pgtide.max_client_conn", "2")]);
    let _a = connect(&p).await;
    let _b = connect(&p).await;
    let started = Instant::now();
    let err = try_connect(&p)
        .await
        .map(|_| ())
        .expect_err("over the limit");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    assert!(
        message(&err).contains("max_client_conn"),
        "{}",
        message(&err)
    );
    assert_eq!(count(&p, FailureClass::ClientLimit), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refused_and_connect_timeout_are_reported_quickly() {
    let c = cluster();
    // Nobody listens on this port: ECONNREFUSED.
    let dead = free_port();
    let p = pgtide(
        &c,
        &[
            ("databases.app.port", &dead.to_string()),
            ("pool.acquire_timeout", "10s"),
        ],
    );
    let started = Instant::now();
    let err = try_connect(&p).await.map(|_| ()).expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fails fast, not at acquire_timeout"
    );
    assert!(
        message(&err).contains("Connection refused"),
        "{}",
        message(&err)
    );
    assert_eq!(count(&p, FailureClass::ConnectRefused), 1);

    // A listener that accepts but never answers: connect_timeout fires.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let p = pgtide(
        &c,
        &[
            ("databases.app.port", &port.to_string()),
            ("pool.connect_timeout", "300ms"),
        ],
    );
    let started = Instant::now();
    let err = try_connect(&p).await.map(|_| ()).expect_err("timed out");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        message(&err).contains("timed out after 300ms"),
        "{}",
        message(&err)
    );
    assert_eq!(count(&p, FailureClass::ConnectTimeout), 1);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_queries_and_transactions_are_logged_with_their_time_split() {
    let c = cluster();
    let p = pgtide(&c, &[("pool.slow_query_threshold", "200ms")]);
    let client = connect(&p).await;
    assert_eq!(value(&client, "SELECT 'fast'").await, "fast");
    assert_eq!(p.handle().shared().failures.slow_count(), 0);
    client
        .simple_query("SELECT pg_sleep(0.3), 'secret data'")
        .await
        .unwrap();
    // A transaction whose queries are fast but whose client dawdles: the server's share is
    // small, which tells on-call the database is not the problem.
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.batch_execute("COMMIT").await.unwrap();
    let shared = p.handle().shared();
    // The transaction is reported after its server is released, which is after the client
    // already has its answer: give the session a moment.
    let slow_events = || {
        shared
            .events
            .recent(100)
            .iter()
            .filter(|e| e.kind.as_str() == "slow_query")
            .count()
    };
    wait_until(Duration::from_secs(2), || slow_events() >= 2).await;
    assert_eq!(shared.failures.slow_count(), 2);
    let slow: Vec<_> = shared
        .events
        .recent(100)
        .into_iter()
        .filter(|e| e.kind.as_str() == "slow_query")
        .collect();
    assert_eq!(slow.len(), 2);
    assert_eq!(
        slow[0].message, "SELECT pg_sleep(?), ?",
        "literals redacted"
    );
    let detail = slow[0].code.clone().unwrap();
    assert!(detail.starts_with("query"), "{detail}");
    assert_eq!(slow[1].message, "BEGIN");
    let detail = slow[1].code.clone().unwrap();
    assert!(detail.starts_with("transaction"), "{detail}");
    let server_ms: f64 = detail
        .split("server ")
        .nth(1)
        .and_then(|s| s.trim_end_matches("ms").parse().ok())
        .unwrap();
    assert!(
        server_ms < 150.0,
        "client think time is not server time: {detail}"
    );
}

/// A 57014 is the server's statement_timeout unless pgtide or the client cancelled the
/// statement: told by who cancelled, not by the message, which is in the server's
/// `lc_messages` (the harness's servers speak only English, so a 57014 raised with other
/// words stands in for a localized server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_told_from_a_client_cancel_without_reading_the_message() {
    let c = cluster();
    let p = pgtide(&c, &[("pool.statement_timeout", "2s")]);
    let client = connect(&p).await;
    // The client cancels through pgtide: 57014, but not a statement timeout.
    let token = client.cancel_token();
    let sleeper = client.simple_query("SELECT pg_sleep(10)");
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel sent");
    };
    let (cancelled, ()) = tokio::join!(sleeper, cancel);
    let err = cancelled.map(|_| ()).expect_err("cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(message(&err).contains("user request"), "{}", message(&err));
    assert_eq!(count(&p, FailureClass::StatementTimeout), 0);
    // The server's own statement_timeout: counted.
    let err = client
        .simple_query("SELECT pg_sleep(10)")
        .await
        .map(|_| ())
        .expect_err("timed out");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert_eq!(count(&p, FailureClass::StatementTimeout), 1);
    // A 57014 in other words than "statement timeout", which nobody asked for: counted too.
    let err = client
        .batch_execute(
            "DO $$ BEGIN RAISE EXCEPTION 'Zeitüberschreitung der Anweisung' \
             USING ERRCODE = 'query_canceled'; END $$",
        )
        .await
        .expect_err("raised");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(!message(&err).contains("statement timeout"));
    assert_eq!(count(&p, FailureClass::StatementTimeout), 2);
    // A cancel that finds nothing running (the client idles inside a transaction, so pgtide
    // forwards it, and the server ignores it) is forgotten at the next answer: it does not
    // swallow the next timeout.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(value(&client, "SELECT 'between'").await, "between");
    client
        .simple_query("SELECT pg_sleep(10)")
        .await
        .map(|_| ())
        .expect_err("timed out");
    assert_eq!(count(&p, FailureClass::StatementTimeout), 3);
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(value(&client, "SELECT 'ok'").await, "ok");
}
