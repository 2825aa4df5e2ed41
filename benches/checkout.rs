//! Pool checkout and return: what pgtide pays per transaction to get a server connection and
//! give it back, against a real PostgreSQL started by the test harness (`pgtide_harness`).
//!
//! - `pool/checkout_return`: one task, an idle server always ready (the uncontended path:
//!   permit, idle list, counters, clocks).
//! - `pool/checkout_return_contended_16_on_4`: 16 tasks share a pool of 4 servers on one thread,
//!   as pgtide's default runtime runs them; the time is per checkout+return, including the FIFO
//!   hand-over to a waiting task.
//!
//! Run: `cargo bench -p pgtide-benches --bench checkout` (as root: the harness runs PostgreSQL
//! as the `postgres` OS user). Results: docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pgtide_config::Loader;
use pgtide_harness::{Auth, Cluster};
use pgtide_pool_core::{Authenticator, Pool, Shared};
use tokio::runtime::Runtime;

const USER: &str = "bench";
const PASSWORD: &str = "bench";
const DB: &str = "bench";
const POOL_SIZE: i64 = 4;
const TASKS: usize = 16;

/// A pool with every server already open, on a current-thread runtime.
fn warm_pool(cluster: &Cluster) -> (Runtime, Arc<Shared>, Arc<Pool>) {
    let config = Loader::new()
        .set("pgtide.auth_type", "trust")
        .set("databases.bench.host", "127.0.0.1")
        .set("databases.bench.port", i64::from(cluster.port()))
        .set("databases.bench.password", PASSWORD)
        .set("pool.max_size", POOL_SIZE)
        .load()
        .expect("bench config is valid");
    let auth = Authenticator::load(&config).expect("trust needs no auth file");
    let server_tls = pgtide_pool_core::tls::server_setups(&config).expect("no TLS");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shared = Shared::new(config, auth, None, server_tls);
    let pool = rt.block_on(async {
        let pool = shared
            .pool_for(DB, USER)
            .expect("the bench database is configured");
        let mut held = Vec::new();
        for _ in 0..POOL_SIZE {
            held.push(pool.acquire().await.expect("server connection opens"));
        }
        for c in held {
            pool.release(c, true);
        }
        pool
    });
    (rt, shared, pool)
}

fn bench_checkout(c: &mut Criterion) {
    let cluster = Cluster::builder()
        .auth(Auth::ScramSha256)
        .user(USER, PASSWORD)
        .database_owned_by(DB, USER)
        .start()
        .expect("PostgreSQL starts (run as root with PostgreSQL 15 installed)");
    let (rt, _shared, pool) = warm_pool(&cluster);
    let mut g = c.benchmark_group("pool");
    g.bench_function("checkout_return", |b| {
        b.iter(|| {
            rt.block_on(async {
                let c = pool.acquire().await.expect("idle server");
                pool.release(c, true);
            })
        })
    });
    g.bench_function("checkout_return_contended_16_on_4", |b| {
        b.iter_custom(|iters| {
            let per_task = iters.div_ceil(TASKS as u64).max(1);
            let start = Instant::now();
            rt.block_on(async {
                let mut tasks = Vec::new();
                for _ in 0..TASKS {
                    let pool = pool.clone();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..per_task {
                            let c = pool.acquire().await.expect("server within acquire_timeout");
                            // Let the others queue, as clients do while a query runs.
                            tokio::task::yield_now().await;
                            pool.release(c, true);
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
            });
            // Per checkout: scale the measured time to the `iters` criterion asked for.
            let total = per_task * TASKS as u64;
            start.elapsed().mul_f64(iters as f64 / total as f64)
        })
    });
    g.finish();
    drop(pool);
    drop(rt);
    drop(cluster);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_checkout
}
criterion_main!(benches);
