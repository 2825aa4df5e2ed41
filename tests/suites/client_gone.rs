//! A client that leaves in any protocol state — with a Terminate or by closing its socket —
//! never leaves its server busy or its pool slot taken; a client queued for a server can cancel
//! its query. Raw protocol throughout: what matters is the exact point at which the client goes.
//!
//! Each case runs against a pool of one server, so a leaked server shows at once: the next
//! client could not get one.

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, Raw};
use common::*;
use pgtide_harness::{Auth, Cluster, Pgtide};

/// How a client leaves.
#[derive(Debug, Clone, Copy)]
enum Leave {
    Terminate,
    Close,
}

/// Brings a logged-in client to one protocol state.
type Setup = fn(&mut Raw);

/// The states a client can leave from.
const CASES: &[(&str, Setup)] = &[
    ("copy from stdin, before any data", |c| {
        c.query("copy t from stdin");
        c.read_until(b'G');
    }),
    ("copy from stdin, after some data", |c| {
        c.query("copy t from stdin");
        c.read_until(b'G');
        c.send(&raw_message(b'd', b"7\n"));
    }),
    ("copy to stdout, mid-stream", |c| {
        c.query("copy (select g from generate_series(1, 3000000) g) to stdout");
        c.read_until(b'd');
    }),
    ("copy from stdin through the extended protocol", |c| {
        let mut m = raw::extended("copy t from stdin");
        m.extend(raw::sync());
        c.send(&m);
        c.read_until(b'G');
    }),
    ("copy from stdin inside a transaction", |c| {
        c.rows("begin").unwrap();
        c.query("copy t from stdin");
        c.read_until(b'G');
    }),
    ("inside a transaction, after a write", |c| {
        c.rows("begin").unwrap();
        c.rows("insert into t values (7)").unwrap();
    }),
    ("inside a failed transaction", |c| {
        c.rows("begin").unwrap();
        assert!(c.rows("select 1/0").is_err());
    }),
    ("mid-pipeline, executed but not synced", |c| {
        let mut m = raw::extended("insert into t values (7)");
        m.extend(raw::flush());
        c.send(&m);
        c.read_until(b'C');
    }),
    ("after an error, awaiting Sync", |c| {
        let mut m = raw::extended("selec 1");
        m.extend(raw::flush());
        c.send(&m);
        c.read_until(b'E');
    }),
    ("with a query running", |c| {
        c.query("select pg_sleep(1)");
        std::thread::sleep(Duration::from_millis(100));
    }),
];

fn setup(mode: &str) -> (Cluster, Pgtide) {
    let cluster = app_cluster(Auth::Trust);
    cluster
        .superuser_psql_in(
            DB,
            &["create table t (a int)", "alter table t owner to app"],
        )
        .expect("table t");
    let p = pgtide_with(
        &cluster,
        &[
            ("pool.mode", mode),
            ("pool.max_size", "1"),
            ("pool.acquire_timeout", "3s"),
        ],
    );
    (cluster, p)
}

fn login(p: &Pgtide) -> Raw {
    Raw::login(p.port(), &[("user", USER), ("database", DB)]).expect("login")
}

/// Leaves from every state both ways, and checks after each that the server is free: nothing
/// checked out, no backend of the app user busy (but a sleep that runs out by itself), and the
/// next client served from the pool's only slot. Nothing the gone client wrote is kept.
fn every_state_both_ways(mode: &str) {
    let (cluster, p) = setup(mode);
    let pool = || {
        p.handle()
            .shared()
            .pools()
            .into_iter()
            .next()
            .expect("a pool")
    };
    for (name, drive) in CASES {
        for leave in [Leave::Terminate, Leave::Close] {
            let mut c = login(&p);
            drive(&mut c);
            let started = Instant::now();
            match leave {
                Leave::Terminate => c.terminate(),
                Leave::Close => c.close(),
            }
            let what = format!("{mode} mode, {name}, {leave:?}");
            let freed = wait_for(Duration::from_secs(5), || {
                pool()
                    .stats
                    .active
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0
            });
            assert!(freed, "{what}: the server is still checked out");
            let busy = "select count(*) from pg_stat_activity where usename = 'app' \
                        and state <> 'idle' and query not like '%pg_sleep%'";
            let quiet = wait_for(Duration::from_secs(5), || {
                cluster.superuser_psql(busy).is_ok_and(|n| n == "0")
            });
            assert!(
                quiet,
                "{what}: a backend stays busy: {:?}",
                cluster.superuser_psql(
                    "select pid, state, query from pg_stat_activity where usename = 'app'"
                )
            );
            let mut next = login(&p);
            assert_eq!(
                next.one("select count(*) from t"),
                "0",
                "{what}: a write was kept"
            );
            next.terminate();
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "{what}: the next client waited {:?} for the pool's server",
                started.elapsed()
            );
        }
    }
    p.check_no_leaks().expect("no leaks");
}

fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    cond()
}

#[test]
fn transaction_mode_frees_the_server_whatever_state_the_client_leaves_in() {
    every_state_both_ways("transaction");
}

#[test]
fn session_mode_frees_the_server_whatever_state_the_client_leaves_in() {
    every_state_both_ways("session");
}

/// The defect as reported: five clients that Terminate in COPY FROM STDIN used to take a pool
/// of five for good, and every later client got 53300.
#[test]
fn terminate_during_copy_does_not_exhaust_the_pool() {
    let cluster = app_cluster(Auth::Trust);
    cluster
        .superuser_psql_in(
            DB,
            &["create table t (a int)", "alter table t owner to app"],
        )
        .expect("table t");
    let p = pgtide_with(
        &cluster,
        &[("pool.max_size", "5"), ("pool.acquire_timeout", "2s")],
    );
    for _ in 0..5 {
        let mut c = login(&p);
        c.query("copy t from stdin");
        c.read_until(b'G');
        c.terminate();
    }
    let mut next = login(&p);
    assert_eq!(next.one("select 1"), "1");
}

/// A CancelRequest for a client queued for a server ends its wait with 57014 at once; its
/// query never reaches a server, and the client goes on normally.
#[test]
fn a_cancel_aborts_a_wait_for_a_server() {
    let (cluster, p) = setup("transaction");
    let mut holder = login(&p);
    holder.rows("begin").unwrap();
    let mut waiter = login(&p);
    waiter.query("insert into t values (42)");
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    raw::cancel(p.port(), waiter.key);
    let answer = waiter.read_until(b'Z');
    let error = answer
        .iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, b)| raw::fields(b))
        .expect("an ErrorResponse");
    assert_eq!(error[&'C'], "57014");
    assert_eq!(error[&'M'], "canceling statement due to user request");
    assert_eq!(error[&'S'], "ERROR");
    assert!(sent.elapsed() < Duration::from_secs(1), "answered at once");
    assert_eq!(answer.last().unwrap().1, b"I");
    holder.rows("commit").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(waiter.one("select count(*) from t where a = 42"), "0");
    assert_eq!(waiter.one("select 2"), "2");
    // A cancel for a client waiting in a pipeline answers only the first sync point.
    holder.rows("begin").unwrap();
    let mut m = raw::query("insert into t values (43)");
    m.extend(raw::query("select 3"));
    waiter.send(&m);
    std::thread::sleep(Duration::from_millis(300));
    raw::cancel(p.port(), waiter.key);
    let first = waiter.read_until(b'Z');
    assert!(first.iter().any(|(t, _)| *t == b'E'));
    holder.rows("commit").unwrap();
    let second = waiter.read_until(b'Z');
    assert!(second.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"3")));
    assert_eq!(waiter.one("select count(*) from t where a = 43"), "0");
    drop((p, cluster));
}
