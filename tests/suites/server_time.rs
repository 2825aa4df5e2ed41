//! Server time per transaction and per round trip (`pool.stats.server_tx`,
//! `pool.stats.server_query`): the server's share of a transaction, without the client's
//! think time between its statements — the latency signal the adaptive sizing controller
//! compares against its baseline.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use pgtide_harness::{Auth, Cluster, Pgtide};
use pgtide_pool_core::stats::DurationHist;
use pgtide_pool_core::Pool;

mod common;
use common::*;

fn cluster() -> Cluster {
    app_cluster(Auth::ScramSha256)
}

/// Count and total of a histogram.
fn read(h: &DurationHist) -> (u64, Duration) {
    (
        h.count.load(Relaxed),
        Duration::from_nanos(h.sum_ns.load(Relaxed)),
    )
}

/// What the server-time histograms gained since `before` (transactions, their time; round
/// trips, their time).
struct Gained {
    tx: (u64, Duration),
    trips: (u64, Duration),
}

fn gained(pool: &Pool, before: &Gained) -> Gained {
    let (tx, trips) = (read(&pool.stats.server_tx), read(&pool.stats.server_query));
    Gained {
        tx: (tx.0 - before.tx.0, tx.1 - before.tx.1),
        trips: (trips.0 - before.trips.0, trips.1 - before.trips.1),
    }
}

fn now(pool: &Pool) -> Gained {
    Gained {
        tx: read(&pool.stats.server_tx),
        trips: read(&pool.stats.server_query),
    }
}

fn pool(p: &Pgtide) -> Arc<Pool> {
    p.handle()
        .shared()
        .pool_for(DB, USER)
        .expect("the app pool")
}

/// The histograms are updated after the client has its answer (when the server is released
/// or its round trip closed): waits until `tx` transactions are in.
async fn settle(pool: &Pool, before: &Gained, tx: u64) -> Gained {
    wait_until(Duration::from_secs(3), || gained(pool, before).tx.0 >= tx).await;
    gained(pool, before)
}

/// The histograms once the warm-up transaction is in.
async fn quiet(pool: &Pool) -> Gained {
    wait_until(Duration::from_secs(3), || {
        read(&pool.stats.server_tx).0 >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    now(pool)
}

/// One transaction of two statements of 0.2 s each, with 1 s of client think time between:
/// `begin; select pg_sleep(0.2)`, think, `select pg_sleep(0.2); commit`.
async fn two_statements_with_think_time(client: &tokio_postgres::Client) {
    client
        .batch_execute("begin; select pg_sleep(0.2)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    client
        .batch_execute("select pg_sleep(0.2); commit")
        .await
        .unwrap();
}

fn assert_about(d: Duration, secs: f64, what: &str) {
    let got = d.as_secs_f64();
    assert!(
        got >= secs && got < secs + 0.35,
        "{what}: {got:.3} s, expected about {secs} s (client think time is not server time)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactions_server_time_leaves_out_the_clients_think_time() {
    let c = cluster();
    let p = pgtide_with(&c, &[]);
    let client = connect(&p).await;
    assert_eq!(value(&client, "SELECT 'warm'").await, "warm");
    let pool = pool(&p);
    let before = quiet(&pool).await;
    two_statements_with_think_time(&client).await;
    let g = settle(&pool, &before, 1).await;
    assert_eq!(g.tx.0, 1, "one transaction");
    assert_about(g.tx.1, 0.4, "server time of the transaction");
    assert_eq!(g.trips.0, 2, "two round trips");
    assert_about(g.trips.1, 0.4, "server time of its round trips");
    // A one-statement transaction: one round trip, timed by the checkout and the release.
    let before = now(&pool);
    client.batch_execute("select pg_sleep(0.1)").await.unwrap();
    let g = settle(&pool, &before, 1).await;
    assert_eq!((g.tx.0, g.trips.0), (1, 1));
    assert_about(g.tx.1, 0.1, "one statement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_records_each_transaction_while_the_server_stays() {
    let c = cluster();
    let p = pgtide_with(&c, &[("pool.mode", "session")]);
    let client = connect(&p).await;
    assert_eq!(value(&client, "SELECT 'warm'").await, "warm");
    let pool = pool(&p);
    let before = quiet(&pool).await;
    two_statements_with_think_time(&client).await;
    let g = settle(&pool, &before, 1).await;
    assert_eq!(
        g.tx.0, 1,
        "recorded at its ReadyForQuery 'I', the server still held"
    );
    assert_about(g.tx.1, 0.4, "server time of the transaction");
    assert_eq!(g.trips.0, 2);
    // Think time between transactions is not server time either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.batch_execute("select pg_sleep(0.1)").await.unwrap();
    let g = settle(&pool, &before, 2).await;
    assert_eq!((g.tx.0, g.trips.0), (2, 3));
    assert_about(g.tx.1, 0.5, "both transactions");
}
