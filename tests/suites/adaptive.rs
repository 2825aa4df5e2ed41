//! The adaptive controller on a real PostgreSQL: under an I/O-bound pgbench load (transactions
//! that wait in `pg_sleep`) the pool grows past its starting size, every step explained; when
//! the load stops it shrinks back; with adaptive sizing off the pool is a plain fixed pool.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pgtide_harness::{Auth, Cluster, Pgtide};
use pgtide_pool_core::adaptive::{Direction, Reason};

fn setup(extra: &[(&str, &str)]) -> (Cluster, Pgtide) {
    let cluster = app_cluster(Auth::Trust);
    let mut settings = vec![
        ("pool.max_size", "30"),
        ("pool.acquire_timeout", "10s"),
        ("pool.adaptive.tick", "250ms"),
        ("pool.adaptive.shrink_after", "2s"),
        ("pool.adaptive.max_connects_per_tick", "4"),
    ];
    settings.extend_from_slice(extra);
    let p = pgtide_with(&cluster, &settings);
    (cluster, p)
}

/// pgbench with 20 clients running `select pg_sleep(0.05)` for `secs`.
fn sleepy_load(p: &Pgtide, secs: u32) -> std::thread::JoinHandle<String> {
    pgbench_sql(p.port(), 20, secs, "select pg_sleep(0.05);")
}

#[test]
fn the_pool_grows_under_io_bound_load_and_shrinks_after() {
    let (cluster, p) = setup(&[]);
    // Creates the pool (and its controller) before the load.
    let client = Raw::login(p.port(), &[("user", USER), ("database", DB)]).unwrap();
    client.terminate();
    let pool = p.handle().shared().pool_for(DB, USER).unwrap();
    let load = sleepy_load(&p, 6);
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        peak = peak.max(pool.size_target().unwrap_or(0));
        let backends = cluster.connection_count(Some(USER));
        assert!(backends <= 30, "{backends} backends over max_size");
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = load.join().unwrap();
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    // 20 clients each holding a server for 50 ms: the pool must grow from its start (8).
    assert!(peak >= 14, "peak target {peak}");
    let decisions = pool.decisions.last(64);
    assert!(
        decisions
            .iter()
            .any(|d| d.direction == Direction::Up && d.reason == Reason::Demand),
        "{decisions:#?}"
    );
    // Idle now: after shrink_after (2 s) it shrinks, a quarter per tick, towards min_size.
    let shrunk = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        pool.size_target().is_some_and(|t| t <= 3)
    });
    assert!(
        shrunk,
        "target {:?}: {:?}",
        pool.size_target(),
        pool.decisions.last(8)
    );
    assert!(pool
        .decisions
        .last(64)
        .iter()
        .any(|d| d.reason == Reason::LowUtilization));
}

#[test]
fn with_adaptive_sizing_off_the_pool_is_a_fixed_pool() {
    let (_cluster, p) = setup(&[("pool.adaptive.enabled", "false")]);
    let client = Raw::login(p.port(), &[("user", USER), ("database", DB)]).unwrap();
    client.terminate();
    let pool = p.handle().shared().pool_for(DB, USER).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(pool.size_target(), None);
    assert_eq!(pool.sizes().2, 30, "max_size in force");
    assert!(pool.decisions.last(8).is_empty());
}

use common::raw::Raw;
