//! The pool's state machine without PostgreSQL: servers come from [`FakeConnector`], time is
//! tokio's paused clock (every test runs in virtual time; a 5 s acquire_timeout costs nothing).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use pgtide_config::{HumanDuration, PoolSettings};

use super::fake::{FakeConnector, Outcome};
use super::{Pool, PoolEnv, PoolKey};
use crate::breaker::Breaker;
use crate::budget::ConnCap;
use crate::clock::Instant;
use crate::error::AcquireError;
use crate::events::EventRing;
use crate::failure::FailureClass;
use crate::report::Failures;
use crate::server::{ServerTarget, StartupSettings};

struct Fixture {
    pool: Arc<Pool>,
    fake: Arc<FakeConnector>,
    /// pgtide's shutdown signal, never sent: the pool's background work runs for the test.
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn settings(max_size: u32) -> PoolSettings {
    PoolSettings {
        max_size,
        acquire_timeout: HumanDuration::from_secs(2),
        connect_timeout: HumanDuration::from_secs(1),
        ..PoolSettings::default()
    }
}

fn target(breaker_threshold: u32, events: &Arc<EventRing>) -> ServerTarget {
    ServerTarget {
        host: "db".into(),
        port: 5432,
        dbname: "app".into(),
        user: "app".into(),
        password: None,
        startup_params: Vec::new(),
        connect_timeout: Duration::from_secs(1),
        tls: None,
        max_lifetime: None,
        breaker: Arc::new(Breaker::new(
            "db:5432".into(),
            breaker_threshold,
            Duration::from_secs(4),
            events.clone(),
        )),
        scram_keys: Default::default(),
    }
}

fn fixture_with(settings: PoolSettings, caps: Vec<Arc<ConnCap>>, threshold: u32) -> Fixture {
    let events = Arc::new(EventRing::default());
    let fake = Arc::new(FakeConnector::default());
    let shutdown = tokio::sync::watch::Sender::new(false);
    let env = PoolEnv {
        failures: Arc::new(Failures::new(events.clone())),
        caps,
        connector: fake.clone(),
        shutdown: shutdown.subscribe(),
    };
    let key = PoolKey {
        database: "app".into(),
        user: "app".into(),
    };
    let pool = Pool::new(key, target(threshold, &events), settings, env);
    Fixture {
        pool,
        fake,
        _shutdown: shutdown,
    }
}

fn fixture(max_size: u32) -> Fixture {
    fixture_with(settings(max_size), Vec::new(), 0)
}

/// (open, idle, max_size, checked out).
fn sizes(p: &Pool) -> (u32, usize, u32, usize) {
    let (open, idle, max) = p.sizes();
    (open, idle, max, p.stats.active.load(Relaxed))
}

#[tokio::test(start_paused = true)]
async fn waiting_clients_are_served_in_arrival_order() {
    let f = fixture(1);
    let first = f.pool.acquire().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        let pool = f.pool.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let c = pool.acquire().await.unwrap();
            tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            pool.release(c, true);
        });
        // Each waiter queues before the next one starts.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(f.pool.stats.waiting.load(Relaxed), 4);
    f.pool.release(first, true);
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(rx.recv().await.unwrap());
    }
    assert_eq!(order, [0, 1, 2, 3]);
    assert_eq!(
        f.fake.attempts.load(Relaxed),
        1,
        "one server served everyone"
    );
}

#[tokio::test(start_paused = true)]
async fn an_acquire_times_out_at_acquire_timeout_and_leaves_the_queue() {
    let f = fixture(1);
    let held = f.pool.acquire().await.unwrap();
    let start = Instant::now();
    let err = f.pool.acquire().await.unwrap_err();
    assert!(matches!(err, AcquireError::Timeout { .. }), "{err}");
    assert_eq!(err.class(), FailureClass::AcquireTimeout);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(f.pool.stats.acquire_timeouts.load(Relaxed), 1);
    assert_eq!(f.pool.stats.waiting.load(Relaxed), 0);
    f.pool.release(held, true);
    assert_eq!(sizes(&f.pool), (1, 1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn shrinking_under_load_retires_servers_as_they_come_back() {
    let f = fixture(4);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(f.pool.acquire().await.unwrap());
    }
    f.pool.set_max_size(2);
    assert_eq!(sizes(&f.pool), (4, 0, 2, 4), "no client is dropped");
    // No permit is free: a new client waits, even though two will be retired.
    assert!(f.pool.try_acquire().is_none());
    for c in held.drain(..2) {
        f.pool.release(c, true);
    }
    assert_eq!(
        sizes(&f.pool),
        (2, 0, 2, 2),
        "the first two back are closed"
    );
    assert!(f.pool.try_acquire().is_none(), "their permits were retired");
    for c in held.drain(..) {
        f.pool.release(c, true);
    }
    assert_eq!(sizes(&f.pool), (2, 2, 2, 0));
    let a = f.pool.try_acquire().unwrap();
    let b = f.pool.try_acquire().unwrap();
    assert!(f.pool.try_acquire().is_none(), "exactly max_size permits");
    f.pool.release(a, true);
    f.pool.release(b, true);
    assert_eq!(f.fake.live(), 2, "closed servers' sockets are gone");
}

#[tokio::test(start_paused = true)]
async fn growing_serves_waiting_clients_at_once() {
    let f = fixture(1);
    let held = f.pool.acquire().await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let pool = f.pool.clone();
        waiters.push(tokio::spawn(
            async move { pool.acquire().await.map(|_| ()) },
        ));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    f.pool.set_max_size(3);
    for w in waiters {
        let started = Instant::now();
        w.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_millis(100));
    }
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_full_cap_takes_an_idle_server_from_a_sibling_then_waits() {
    let cap = Arc::new(ConnCap::new("max_db_connections of database app".into(), 2));
    let a = fixture_with(settings(5), vec![cap.clone()], 0);
    let b = fixture_with(settings(5), vec![cap.clone()], 0);
    let a1 = a.pool.acquire().await.unwrap();
    let a2 = a.pool.acquire().await.unwrap();
    a.pool.release(a2, true);
    assert_eq!(cap.used(), 2);
    // B needs a server: A's idle one is closed for it.
    let b1 = b.pool.acquire().await.unwrap();
    assert_eq!(sizes(&a.pool), (1, 0, 5, 1));
    assert_eq!(cap.used(), 2);
    // Nothing idle left anywhere: B waits for a slot until its deadline.
    let start = Instant::now();
    let err = b.pool.acquire().await.unwrap_err();
    assert!(matches!(err, AcquireError::CapReached { .. }), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // A slot freed by A wakes a waiting B.
    let pool = b.pool.clone();
    let waiter = tokio::spawn(async move { pool.acquire().await.is_ok() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a1); // closed, not reused: its slot is free
    assert!(waiter.await.unwrap());
    drop(b1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_fails_fast_probes_and_closes() {
    let f = fixture_with(settings(5), Vec::new(), 2);
    f.fake.set(Outcome::Refused);
    for _ in 0..2 {
        let err = f.pool.acquire().await.unwrap_err();
        assert_eq!(err.class(), FailureClass::ConnectRefused);
    }
    let breaker = f.pool.target().breaker.clone();
    assert!(breaker.is_open());
    // Fail fast: no connect is attempted for clients while the probe runs.
    let attempts = f.fake.attempts.load(Relaxed);
    let err = f.pool.acquire().await.unwrap_err();
    assert!(matches!(err, AcquireError::Unavailable { .. }), "{err}");
    assert_eq!(err.class(), FailureClass::ConnectRefused);
    assert_eq!(f.fake.attempts.load(Relaxed), attempts);
    // The server comes back: the probe finds it, and clients connect again.
    f.fake.set(Outcome::Open);
    let deadline = Instant::now() + Duration::from_secs(30);
    while breaker.is_open() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!breaker.is_open(), "the probe closed the breaker");
    assert!(
        f.fake.attempts.load(Relaxed) > attempts,
        "the probe connected"
    );
    f.pool.acquire().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn min_size_is_refilled_after_servers_die_and_reports_when_it_cannot() {
    let f = fixture_with(
        PoolSettings {
            min_size: 2,
            ..settings(5)
        },
        Vec::new(),
        0,
    );
    assert!(f.pool.maintain().await);
    assert_eq!(sizes(&f.pool), (2, 2, 5, 0));
    f.fake.kill_all();
    f.fake.set(Outcome::Refused);
    assert!(
        !f.pool.maintain().await,
        "below min_size: the caller retries with backoff"
    );
    assert_eq!(sizes(&f.pool), (0, 0, 5, 0), "dead servers dropped");
    f.fake.set(Outcome::Open);
    assert!(f.pool.maintain().await);
    assert_eq!(sizes(&f.pool), (2, 2, 5, 0));
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_acquire_gives_back_everything_it_took() {
    let cap = Arc::new(ConnCap::new("max_user_connections of user app".into(), 3));
    let f = fixture_with(settings(1), vec![cap.clone()], 0);
    // Dropped mid-connect (a client's cancel): the open count and the cap slot come back.
    f.fake.set(Outcome::Hang);
    let pool = f.pool.clone();
    let connecting = tokio::spawn(async move { pool.acquire().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sizes(&f.pool).0, 1);
    assert_eq!(cap.used(), 1);
    connecting.abort();
    let _ = connecting.await;
    assert_eq!(sizes(&f.pool), (0, 0, 1, 0));
    assert_eq!(cap.used(), 0);
    // Dropped while queued: the waiting count comes back.
    f.fake.set(Outcome::Open);
    let held = f.pool.acquire().await.unwrap();
    let pool = f.pool.clone();
    let queued = tokio::spawn(async move { pool.acquire().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.pool.stats.waiting.load(Relaxed), 1);
    queued.abort();
    let _ = queued.await;
    assert_eq!(f.pool.stats.waiting.load(Relaxed), 0);
    f.pool.release(held, true);
    assert!(f.pool.try_acquire().is_some(), "its permit was never taken");
}

#[tokio::test(start_paused = true)]
async fn servers_started_with_client_settings_go_only_to_those_clients() {
    let f = fixture(2);
    let german = Arc::new(settings_of(&[("datestyle", "German")]));
    let plain = f.pool.acquire().await.unwrap();
    f.pool.release(plain, true);
    // A client with settings never gets the plain server; the pool has room for its own.
    let mut g = f.pool.acquire_for(Some(&german)).await.unwrap();
    assert_eq!(g.conn().startup.as_deref(), Some(&*german));
    f.pool.release(g, true);
    assert_eq!(sizes(&f.pool), (2, 2, 2, 0));
    // Each kind finds its own idle server.
    let mut p = f.pool.try_acquire().unwrap();
    assert!(p.conn().startup.is_none());
    f.pool.release(p, true);
    let mut g = f.pool.try_acquire_for(Some(&german)).unwrap();
    assert!(g.conn().startup.is_some());
    f.pool.release(g, true);
    // Full, and nothing idle matches: the oldest idle server makes room.
    let iso = Arc::new(settings_of(&[("datestyle", "ISO")]));
    assert!(f.pool.try_acquire_for(Some(&iso)).is_none());
    let mut i = f.pool.acquire_for(Some(&iso)).await.unwrap();
    assert_eq!(i.conn().startup.as_deref(), Some(&*iso));
    assert_eq!(sizes(&f.pool), (2, 1, 2, 1));
    f.pool.release(i, true);
    assert_eq!(f.fake.live(), 2);
}

fn settings_of(pairs: &[(&str, &str)]) -> StartupSettings {
    let startup = pgtide_protocol::startup::StartupMessage {
        version: pgtide_protocol::startup::ProtocolVersion { major: 3, minor: 0 },
        params: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    StartupSettings::from_startup(&startup)
}

#[tokio::test(start_paused = true)]
async fn server_time_counts_round_trips_not_the_clients_think_time() {
    let f = fixture(1);
    let mut c = f.pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // first round trip
    c.answered(Instant::now(), false);
    tokio::time::sleep(Duration::from_secs(1)).await; // the client thinks
    c.asked(Instant::now());
    tokio::time::sleep(Duration::from_millis(200)).await; // second round trip
    f.pool.release(c, true);
    let tx = &f.pool.stats.server_tx;
    assert_eq!(tx.count.load(Relaxed), 1);
    assert_eq!(tx.sum_ns.load(Relaxed), 400_000_000);
    assert_eq!(f.pool.stats.server_query.count.load(Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_53300_refusal_fails_that_acquire_only_and_is_classified() {
    let f = fixture(2);
    f.fake.then(&[Outcome::TooMany]);
    let err = f.pool.acquire().await.unwrap_err();
    assert_eq!(err.class(), FailureClass::ServerTooManyConnections);
    assert_eq!(f.pool.stats.connect_failures.load(Relaxed), 1);
    assert_eq!(
        sizes(&f.pool),
        (0, 0, 2, 0),
        "nothing counted for the refused connect"
    );
    f.pool.acquire().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_pause_holds_new_transactions_without_their_timeout_and_resume_releases_them() {
    let f = fixture(2);
    let inflight = f.pool.acquire().await.unwrap();
    f.pool.pause();
    assert!(f.pool.try_acquire().is_none());
    let pool = f.pool.clone();
    let waiter = tokio::spawn(async move { pool.acquire().await.map(|_| ()) });
    // Paused far longer than acquire_timeout (2 s): the waiter is still waiting, counted.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!waiter.is_finished());
    assert_eq!(f.pool.stats.waiting.load(Relaxed), 1);
    // The transaction in flight finishes and its server stays.
    f.pool.release(inflight, true);
    assert_eq!(sizes(&f.pool), (1, 1, 2, 0));
    f.pool.resume();
    waiter.await.unwrap().unwrap();
    assert_eq!(
        f.fake.attempts.load(Relaxed),
        1,
        "the kept server served the waiter"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_lets_go_of_every_server_and_opens_none() {
    let f = fixture_with(
        PoolSettings {
            min_size: 1,
            ..settings(3)
        },
        Vec::new(),
        0,
    );
    let busy = f.pool.acquire().await.unwrap();
    let idle = f.pool.acquire().await.unwrap();
    f.pool.release(idle, true);
    f.pool.drain();
    assert_eq!(
        sizes(&f.pool),
        (1, 0, 3, 1),
        "the idle server closed at once"
    );
    assert!(f.pool.maintain().await, "no min_size refill while draining");
    assert_eq!(sizes(&f.pool).0, 1);
    let pool = f.pool.clone();
    let done = tokio::spawn(async move { pool.drained().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!done.is_finished(), "a server is still in use");
    f.pool.release(busy, true);
    done.await.unwrap();
    assert_eq!(sizes(&f.pool), (0, 0, 3, 0));
    assert_eq!(f.fake.live(), 0);
    f.pool.resume();
    f.pool.acquire().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reconnect_replaces_servers_without_interrupting_clients() {
    let f = fixture(3);
    let busy = f.pool.acquire().await.unwrap();
    let idle = f.pool.acquire().await.unwrap();
    f.pool.release(idle, true);
    f.pool.reconnect();
    assert_eq!(sizes(&f.pool), (1, 0, 3, 1));
    f.pool.release(busy, true);
    assert_eq!(
        sizes(&f.pool),
        (0, 0, 3, 0),
        "the busy one closed when it came back"
    );
    let attempts = f.fake.attempts.load(Relaxed);
    f.pool.acquire().await.unwrap();
    assert_eq!(
        f.fake.attempts.load(Relaxed),
        attempts + 1,
        "a new server was opened"
    );
}

#[tokio::test(start_paused = true)]
async fn overrides_and_the_target_survive_a_reload_and_the_size_follows_them() {
    let f = fixture(10);
    f.pool
        .set_override("max_size", toml::Value::Integer(4))
        .unwrap();
    assert_eq!(f.pool.sizes().2, 4);
    assert!(f
        .pool
        .set_override("min_size", toml::Value::Integer(5))
        .is_err());
    f.pool.set_size_target(Some(2));
    assert_eq!(f.pool.sizes().2, 2);
    let events = Arc::new(EventRing::default());
    let reload = f.pool.reconfigure(target(0, &events), settings(20));
    assert_eq!(reload.masked, ["max_size"]);
    assert!(reload.dropped.is_empty());
    assert_eq!(f.pool.settings().max_size, 4, "the override still decides");
    assert_eq!(f.pool.sizes().2, 2, "and so does the controller's target");
    f.pool.set_size_target(None);
    assert_eq!(f.pool.sizes().2, 4);
    assert!(f.pool.clear_override("max_size"));
    assert_eq!(f.pool.sizes().2, 20);
    let size = f
        .pool
        .in_force()
        .into_iter()
        .find(|v| v.key == "size")
        .unwrap();
    assert_eq!(size.value, toml::Value::Integer(20));
    // A reload that makes an override invalid drops it, and says why.
    f.pool
        .set_override("min_size", toml::Value::Integer(8))
        .unwrap();
    let reload = f.pool.reconfigure(target(0, &events), settings(5));
    assert!(!reload.dropped.is_empty());
    assert!(f.pool.overrides().is_empty());
    assert_eq!(f.pool.settings().min_size, 0);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_acquire_shows_in_the_next_signals_wait_p99() {
    let f = fixture(1);
    *f.fake.delay.lock().unwrap() = Duration::ZERO;
    let first = f.pool.signals(Instant::now());
    assert_eq!(first.acquires, 0);
    let held = f.pool.acquire().await.unwrap();
    for _ in 0..20 {
        let c = f.pool.try_acquire();
        assert!(c.is_none());
    }
    assert!(f.pool.acquire().await.is_err(), "times out after 2 s");
    let s = f.pool.signals(Instant::now());
    assert_eq!(s.acquires, 1);
    assert_eq!(s.acquire_timeouts, 1);
    assert_eq!(
        s.acquire_wait.count, 2,
        "the timed-out wait is in the distribution"
    );
    assert!(
        s.acquire_wait.p99 >= Duration::from_secs(2),
        "{:?}",
        s.acquire_wait
    );
    assert_eq!(s.waiting, 0);
    assert_eq!(s.active, 1);
    // The window is the 2 s since the previous reading; one server busy all of it.
    assert_eq!(s.window, Duration::from_secs(2));
    assert_eq!(s.utilization, Some(1.0));
    assert!((s.busy_servers - 1.0).abs() < 1e-9);
    f.pool.release(held, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = f.pool.signals(Instant::now());
    assert_eq!(
        idle.acquire_wait.count, 0,
        "a new window starts at each reading"
    );
    assert_eq!(idle.utilization, Some(0.0));
    assert_eq!(idle.server_tx.count, 1);
}

#[tokio::test(start_paused = true)]
async fn connects_are_timed_and_failures_classified_per_pool() {
    let f = fixture(3);
    *f.fake.delay.lock().unwrap() = Duration::from_millis(40);
    let a = f.pool.acquire().await.unwrap();
    f.fake.set(Outcome::Refused);
    assert!(f.pool.acquire().await.is_err());
    let s = f.pool.signals(Instant::now());
    assert_eq!(s.connect_time.count, 1);
    assert_eq!(s.connect_time.mean, Some(Duration::from_millis(40)));
    assert_eq!(s.connect_failures, [(FailureClass::ConnectRefused, 1)]);
    assert_eq!(
        s.acquire_wait.p99,
        Duration::ZERO,
        "connect time is not wait time"
    );
    assert_eq!(s.open, 1);
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn pools_under_one_budget_share_it_by_demand_and_never_exceed_it() {
    let cap = Arc::new(ConnCap::budget("the budget of server db:5432".into(), 12));
    let mut fixtures = Vec::new();
    for i in 0..3 {
        let mut s = settings(20);
        s.min_size = 1;
        s.adaptive.tick = HumanDuration::from_millis(100);
        s.acquire_timeout = HumanDuration::from_secs(60);
        let f = fixture_with(s, vec![cap.clone()], 0);
        // Distinct names: claims are kept by pool name.
        let f = Fixture {
            pool: Pool::new(
                PoolKey {
                    database: "app".into(),
                    user: format!("u{i}"),
                },
                f.pool.target().as_ref().clone(),
                f.pool.settings().as_ref().clone(),
                f.pool.env.clone(),
            ),
            ..f
        };
        crate::adaptive::spawn_controller(Arc::downgrade(&f.pool), f._shutdown.subscribe());
        fixtures.push(f);
    }
    // Two pools with far more demand than the cap, one with a little.
    let mut held = Vec::new();
    for (i, f) in fixtures.iter().enumerate() {
        let clients = if i == 2 { 2 } else { 30 };
        for _ in 0..clients {
            let pool = f.pool.clone();
            // Transactions of 50 ms, back to back.
            held.push(tokio::spawn(async move {
                loop {
                    let Ok(c) = pool.acquire().await else {
                        continue;
                    };
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    pool.release(c, true);
                }
            }));
        }
    }
    // From the first tick on (the starting sizes were set one pool at a time).
    tokio::time::sleep(Duration::from_millis(150)).await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let targets: Vec<u32> = fixtures
            .iter()
            .map(|f| f.pool.size_target().unwrap_or(0))
            .collect();
        assert!(
            targets.iter().sum::<u32>() <= 12,
            "over the cap: {targets:?}"
        );
        assert!(cap.used() <= 12);
    }
    let targets: Vec<u32> = fixtures
        .iter()
        .map(|f| f.pool.size_target().unwrap())
        .collect();
    assert!(
        (2..=3).contains(&targets[2]),
        "the small pool gets what it needs: {targets:?}"
    );
    assert!(
        targets[0] >= 4 && targets[1] >= 4,
        "the busy ones share the rest: {targets:?}"
    );
    assert_eq!(
        targets.iter().sum::<u32>(),
        12,
        "all of the cap is used: {targets:?}"
    );
    assert!(targets[0].abs_diff(targets[1]) <= 1, "fairly: {targets:?}");
    for h in held {
        h.abort();
    }
}
