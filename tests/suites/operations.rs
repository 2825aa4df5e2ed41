//! What an operator does to a running pgtide, through the seams the admin API will use:
//! runtime overrides that survive a reload (and the reload report that names them), pause and
//! resume under pgbench load, drain, and the snapshot of pools, clients and servers.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::raw::Raw;
use common::*;
use pgtide_harness::{pg_command, Auth, Cluster, Pgtide};
use pgtide_pool_core::pool::Admission;
use pgtide_pool_core::snapshot::ServerState;

fn setup(settings: &[(&str, &str)]) -> (Cluster, Pgtide) {
    let cluster = app_cluster(Auth::Trust);
    let p = pgtide_with(&cluster, settings);
    (cluster, p)
}

/// The config the harness started `p` with, changed by `set`.
fn config_with(p: &Pgtide, set: impl FnOnce(&mut pgtide_config::Config)) -> pgtide_config::Config {
    let mut config = (*p.handle().shared().config()).clone();
    set(&mut config);
    config
}

#[test]
fn a_reload_keeps_runtime_overrides_and_its_report_names_them() {
    let (_cluster, p) = setup(&[("pool.max_size", "5")]);
    let shared = p.handle().shared();
    let limits = shared
        .set_override(DB, USER, "max_size", toml::Value::Integer(2))
        .expect("override accepted");
    let max = limits.iter().find(|v| v.key == "max_size").unwrap();
    assert_eq!(max.value, toml::Value::Integer(2));
    assert_eq!(max.source, pgtide_config::Source::Override);
    assert!(shared
        .set_override(DB, USER, "max_size", toml::Value::Integer(0))
        .is_err());
    assert!(shared
        .set_override("nope", USER, "max_size", 1.into())
        .is_err());
    let report = p
        .handle()
        .reload(config_with(&p, |c| c.pool.max_size = 9))
        .expect("reload applies");
    assert!(
        report.live.iter().any(|k| k == "pool.max_size"),
        "{report:?}"
    );
    assert_eq!(
        report.masked,
        [("app/app".to_owned(), "max_size".to_owned())]
    );
    let pool = shared.pool_for(DB, USER).unwrap();
    assert_eq!(
        pool.settings().max_size,
        2,
        "the override survived the reload"
    );
    assert_eq!(pool.sizes().2, 2);
    // Cleared, the reloaded file's value is in force.
    assert!(shared.clear_override(DB, USER, "max_size").unwrap());
    assert_eq!(pool.settings().max_size, 9);
}

#[test]
fn pause_and_resume_under_pgbench_load_drop_no_client_and_no_transaction() {
    let (cluster, p) = setup(&[("pool.max_size", "4"), ("pool.acquire_timeout", "3s")]);
    cluster
        .superuser_psql_in(DB, &["select 1"])
        .expect("cluster up");
    let init = pg_command("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            USER,
            DB,
        ])
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = p.port();
    let bench = std::thread::spawn(move || {
        pg_command("pgbench")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
            .args(["-c", "8", "-j", "8", "-T", "8", "-S", DB])
            .output()
            .expect("pgbench runs")
    });
    std::thread::sleep(Duration::from_secs(2));
    let pool = p.handle().shared().pool_for(DB, USER).unwrap();
    pool.pause();
    assert_eq!(pool.admission(), Admission::Paused);
    // Let in-flight transactions end, then nothing may start for longer than acquire_timeout.
    std::thread::sleep(Duration::from_millis(200));
    let before = pool.stats.acquires.load(Relaxed);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        pool.stats.acquires.load(Relaxed),
        before,
        "no transaction started while paused"
    );
    assert_eq!(pool.stats.waiting.load(Relaxed), 8, "every client waits");
    pool.resume();
    let out = bench.join().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench failed:\n{text}");
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    assert!(!text.contains("aborted"), "{text}");
    assert!(
        pool.stats.acquires.load(Relaxed) > before,
        "served again after resume"
    );
}

#[test]
fn a_drain_ends_with_no_server_and_resume_serves_again() {
    let (cluster, p) = setup(&[("pool.max_size", "3")]);
    let mut busy = Raw::login(p.port(), &[("user", USER), ("database", DB)]).unwrap();
    busy.rows("begin").unwrap();
    let mut other = Raw::login(p.port(), &[("user", USER), ("database", DB)]).unwrap();
    assert_eq!(other.one("select 1"), "1");
    let pool = p.handle().shared().pool_for(DB, USER).unwrap();
    pool.drain();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let drained = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), pool.drained())
            .await
            .is_ok()
    });
    assert!(!drained, "a transaction still holds a server");
    busy.rows("commit").unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), pool.drained())
            .await
            .expect("drained");
    });
    let count = "select count(*) from pg_stat_activity where usename = 'app'";
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        cluster.superuser_psql(count).is_ok_and(|n| n == "0")
    });
    assert!(gone, "no backend left");
    pool.resume();
    assert_eq!(other.one("select 2"), "2");
}

#[test]
fn the_snapshot_lists_pools_clients_and_servers() {
    let (_cluster, p) = setup(&[("pool.max_size", "3")]);
    let mut a = Raw::login(p.port(), &[("user", USER), ("database", DB)]).unwrap();
    a.rows("begin").unwrap();
    let pid = a.one("select pg_backend_pid()").parse::<i32>().unwrap();
    let b = Raw::login(p.port(), &[("user", USER), ("database", DB)]).unwrap();
    let started = Instant::now();
    let snap = p.handle().shared().snapshot(0);
    assert!(started.elapsed() < Duration::from_secs(1));
    let pool = &snap.pools[0];
    assert_eq!(pool.name, "app/app");
    assert_eq!(pool.admission, Admission::Open);
    assert_eq!(
        (pool.active, pool.clients_active, pool.clients_waiting),
        (1, 1, 0)
    );
    assert!(pool.limits.iter().any(|v| v.key == "max_size"));
    assert_eq!(snap.clients.len(), 2);
    let server = snap
        .servers
        .iter()
        .find(|s| s.backend_pid == pid)
        .expect("a's server listed");
    let a_id = snap
        .clients
        .iter()
        .find(|c| {
            matches!(
                c.state,
                pgtide_pool_core::clients::ClientState::Active { .. }
            )
        })
        .map(|c| c.id);
    assert_eq!(server.state, ServerState::InUse { client: a_id });
    assert!(snap.servers.iter().all(|s| s.pool == "app/app"));
    a.rows("commit").unwrap();
    drop(b);
}
