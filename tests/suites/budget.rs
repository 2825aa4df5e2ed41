//! A connection budget learned from the server and shared by two pgtide instances in front of
//! one PostgreSQL: under load from both, their server connections together stay within
//! `max_connections − superuser_reserved_connections − reserved_connections`, each gets a fair
//! share, and when one stops the other grows into what it freed.

mod common;

use std::time::{Duration, Instant};

use common::raw::Raw;
use common::*;
use pgtide_harness::{Auth, Cluster, Pgtide};

const MAX_CONNECTIONS: u32 = 30;
/// 30 − 3 (superuser_reserved_connections) − 5 (reserved_connections).
const BUDGET: usize = 22;

fn instance(cluster: &Cluster) -> Pgtide {
    pgtide_with(
        cluster,
        &[
            ("pool.max_size", "40"),
            ("pool.acquire_timeout", "20s"),
            ("pool.adaptive.tick", "250ms"),
            ("pool.adaptive.max_connects_per_tick", "8"),
            ("pool.adaptive.learn_budget", "true"),
            ("pool.adaptive.reserved_connections", "5"),
            ("pool.adaptive.budget_interval", "300ms"),
        ],
    )
}

fn load(p: &Pgtide, secs: u32) -> std::thread::JoinHandle<String> {
    pgbench_sql(p.port(), 30, secs, "select pg_sleep(0.05);")
}

/// Server connections of the app user, without the budget control connections.
fn servers(cluster: &Cluster) -> usize {
    cluster
        .superuser_psql(
            "select count(*) from pg_stat_activity where usename = 'app' \
             and application_name not like 'pgtide-budget %'",
        )
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn two_instances_share_a_learned_budget_and_never_exceed_it() {
    let cluster = app_cluster_builder(Auth::Trust)
        .max_connections(MAX_CONNECTIONS)
        .start()
        .expect("cluster");
    let a = instance(&cluster);
    let b = instance(&cluster);
    for p in [&a, &b] {
        Raw::login(p.port(), &[("user", USER), ("database", DB)])
            .unwrap()
            .terminate();
    }
    // Both learners have read the server once.
    std::thread::sleep(Duration::from_secs(1));
    let (la, lb) = (load(&a, 8), load(&b, 8));
    let started = Instant::now();
    let mut peak = 0;
    // Allow the first seconds to converge (each instance starts alone), then never over.
    while started.elapsed() < Duration::from_secs(7) {
        let n = servers(&cluster);
        if started.elapsed() > Duration::from_secs(2) {
            peak = peak.max(n);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pa = a.handle().shared().pool_for(DB, USER).unwrap();
    let pb = b.handle().shared().pool_for(DB, USER).unwrap();
    let (ta, tb) = (pa.size_target().unwrap(), pb.size_target().unwrap());
    let (ra, rb) = (la.join().unwrap(), lb.join().unwrap());
    assert!(ra.contains("number of failed transactions: 0"), "{ra}");
    assert!(rb.contains("number of failed transactions: 0"), "{rb}");
    assert!(peak <= BUDGET, "{peak} server connections, budget {BUDGET}");
    assert!(ta.abs_diff(tb) <= 3, "fair shares: {ta} and {tb}");
    assert!(ta + tb >= 16, "most of the budget used: {ta} + {tb}");
    // One instance stops: the other grows into what it freed.
    drop(b);
    let la = load(&a, 5);
    let mut grown = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        grown = grown.max(pa.size_target().unwrap());
        assert!(servers(&cluster) <= BUDGET);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(la
        .join()
        .unwrap()
        .contains("number of failed transactions: 0"));
    assert!(
        grown > ta.max(tb) + 3,
        "grew to {grown} after the other left ({ta}, {tb})"
    );
}
