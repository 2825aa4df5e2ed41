//! The admin API over real HTTP, in front of pgtide in front of a real PostgreSQL (the test
//! harness): limit changes and pause/resume under pgbench load drop no transaction, reload
//! reports what applied live and what needs a restart, tokens are enforced and no secret is
//! served.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::http::{get, patch, post, request};
use pgtide_admin_api::{AdminState, Tokens};
use pgtide_config::{Config, Role};
use pgtide_harness::{pg_command, Auth, Cluster, Pgtide, PgtideBuilder};
use serde_json::Value;

const OPERATOR: &str = "operator-token-http-000001";
const VIEWER: &str = "viewer-token-http-0000001";
const USER: &str = "app";
const DB: &str = "app";
const PASSWORD: &str = "pw-4b1d-never-shown";
const POOL: &str = "/v1/pools/app/app";

/// The admin API on its own runtime and loopback port, in front of `p`'s proxy; stopped with
/// the proxy's shutdown signal or when dropped.
struct Api {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Api {
    fn start(p: &Pgtide) -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = AdminState::builder(p.handle().clone())
            .tokens(
                Tokens::none()
                    .with("sre-oncall", Role::Operator, OPERATOR)
                    .with("dashboard", Role::Viewer, VIEWER),
            )
            .build();
        let mut stop = p.handle().shutdown_signal();
        let addr = rt.block_on(async {
            let listener = pgtide_admin_api::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(pgtide_admin_api::serve(listener, state, async move {
                pgtide_pool_core::lifecycle::stopping(&mut stop).await
            }));
            addr
        });
        Api { addr, _rt: rt }
    }
}

fn cluster(auth: Auth) -> Cluster {
    Cluster::builder()
        .auth(auth)
        .user(USER, PASSWORD)
        .database_owned_by(DB, USER)
        .start()
        .expect("cluster starts")
}

/// pgtide in front of `cluster`. The adaptive controller is off: these tests are about what an
/// operator sets, and a fixed pool makes "drains to 2" and "grows at once" exact.
fn pgtide(cluster: &Cluster, settings: &[(&str, &str)]) -> Pgtide {
    let mut b = PgtideBuilder::new(cluster, DB)
        .set("databases.app.password", PASSWORD)
        .set("pool.adaptive.enabled", "false");
    for (k, v) in settings {
        b = b.set(k, v);
    }
    b.start().expect("pgtide starts")
}

fn pgbench_init(cluster: &Cluster) {
    let out = pg_command("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p"])
        .arg(cluster.port().to_string())
        .args(["-U", USER, DB])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("pgbench -i");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pgbench through pgtide: `clients` clients (one thread each), select-only, for `secs`.
fn pgbench(p: &Pgtide, clients: u32, secs: u32) -> JoinHandle<Output> {
    let port = p.port().to_string();
    std::thread::spawn(move || {
        let c = clients.to_string();
        pg_command("pgbench")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", USER])
            .args(["-c", &c, "-j", &c, "-T", &secs.to_string(), "-S", DB])
            .output()
            .expect("pgbench runs")
    })
}

fn assert_no_failed_transaction(out: Output) {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench failed:\n{text}");
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    assert!(!text.contains("aborted"), "{text}");
}

/// Polls the pool until `cond` holds or `timeout` passes; the last view either way.
fn wait_pool(api: &Api, timeout: Duration, cond: impl Fn(&Value) -> bool) -> (bool, Value) {
    let deadline = Instant::now() + timeout;
    loop {
        let a = get(api.addr, POOL, Some(VIEWER));
        // 404 until the first client creates the pool.
        let v = a.json();
        if a.status == 200 && cond(&v) {
            return (true, v);
        }
        if Instant::now() > deadline {
            return (false, v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn max_size_5_to_2_under_load_drains_to_2_and_back_to_10_serves_the_waiting_at_once() {
    let cluster = cluster(Auth::Trust);
    pgbench_init(&cluster);
    let p = pgtide(
        &cluster,
        &[("pool.max_size", "5"), ("pool.acquire_timeout", "20s")],
    );
    let api = Api::start(&p);
    // A reload source returning the file's config: SIGHUP's path, through the API.
    let config = (*p.handle().shared().config()).clone();
    p.handle()
        .set_config_source(Arc::new(move || Ok::<Config, Vec<String>>(config.clone())));
    let bench = pgbench(&p, 8, 10);
    let (busy, v) = wait_pool(&api, Duration::from_secs(5), |v| {
        n(&v["size"]["current"]) == 5
    });
    assert!(busy, "the load fills the pool to 5: {v}");

    let a = patch(api.addr, POOL, Some(OPERATOR), r#"{"max_size": 2}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["limits"]["max_size"]["source"], "override");
    let (drained, v) = wait_pool(&api, Duration::from_secs(5), |v| {
        n(&v["size"]["current"]) <= 2 && n(&v["servers"]["active"]) <= 2
    });
    assert!(drained, "drains to 2 servers: {v}");
    // And stays there while 8 clients want servers; they queue instead.
    let mut waited = false;
    for _ in 0..50 {
        let v = get(api.addr, POOL, Some(VIEWER)).json();
        assert!(n(&v["size"]["current"]) <= 2, "{v}");
        waited |= n(&v["clients"]["waiting"]) > 0;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(waited, "clients wait for the 2 servers");

    // A reload (what SIGHUP does) keeps the override: the file says 5.
    let r = post(api.addr, "/v1/reload", Some(OPERATOR));
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(report["masked"][0]["key"], "max_size", "{report}");
    let v = get(api.addr, POOL, Some(VIEWER)).json();
    assert_eq!(v["size"]["max"], 2, "{v}");

    let a = patch(api.addr, POOL, Some(OPERATOR), r#"{"max_size": 10}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    let (grew, v) = wait_pool(&api, Duration::from_secs(3), |v| {
        n(&v["size"]["current"]) > 2
    });
    assert!(grew, "waiting clients get new servers at once: {v}");
    assert_no_failed_transaction(bench.join().unwrap());
    let v = get(api.addr, POOL, Some(VIEWER)).json();
    assert_eq!(v["signals"]["acquire_timeouts"], 0, "{v}");
}

#[test]
fn pause_holds_new_transactions_and_resume_lets_them_go_over_http() {
    let cluster = cluster(Auth::Trust);
    pgbench_init(&cluster);
    let p = pgtide(
        &cluster,
        &[("pool.max_size", "4"), ("pool.acquire_timeout", "3s")],
    );
    let api = Api::start(&p);
    let bench = pgbench(&p, 6, 7);
    std::thread::sleep(Duration::from_secs(2));
    let a = post(api.addr, &format!("{POOL}/pause"), Some(OPERATOR));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["state"], "paused");
    std::thread::sleep(Duration::from_millis(200));
    let pool = p.handle().shared().pool_for(DB, USER).unwrap();
    let before = pool
        .stats
        .acquires
        .load(std::sync::atomic::Ordering::Relaxed);
    // Longer than acquire_timeout: a paused wait does not time out.
    std::thread::sleep(Duration::from_secs(4));
    let v = get(api.addr, POOL, Some(VIEWER)).json();
    assert_eq!(
        pool.stats
            .acquires
            .load(std::sync::atomic::Ordering::Relaxed),
        before,
        "no transaction started while paused"
    );
    assert_eq!(v["clients"]["waiting"], 6, "{v}");
    assert_eq!(
        v["servers"]["active"], 0,
        "in-flight transactions finished: {v}"
    );
    let a = post(api.addr, &format!("{POOL}/resume"), Some(OPERATOR));
    assert_eq!(a.json()["state"], "open");
    assert_no_failed_transaction(bench.join().unwrap());
    assert!(
        pool.stats
            .acquires
            .load(std::sync::atomic::Ordering::Relaxed)
            > before
    );
}

#[test]
fn reload_applies_acquire_timeout_live_and_says_a_listen_change_needs_a_restart() {
    let cluster = cluster(Auth::Trust);
    let p = pgtide(&cluster, &[("pool.acquire_timeout", "5s")]);
    let api = Api::start(&p);
    let source = Arc::new(Mutex::new(Ok((*p.handle().shared().config()).clone())));
    let s = source.clone();
    p.handle()
        .set_config_source(Arc::new(move || s.lock().unwrap().clone()));
    // The pool exists once something used it.
    assert_eq!(
        post(api.addr, &format!("{POOL}/resume"), Some(OPERATOR)).status,
        200
    );

    source
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .pool
        .acquire_timeout = pgtide_config::HumanDuration::from_millis(1500);
    let r = post(api.addr, "/v1/reload", Some(OPERATOR));
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(
        report["live"],
        serde_json::json!(["pool.acquire_timeout"]),
        "{report}"
    );
    assert_eq!(report["needs_restart"], false);
    let v = get(api.addr, POOL, Some(VIEWER)).json();
    assert_eq!(v["limits"]["acquire_timeout"]["value"], "1500ms", "{v}");
    assert_eq!(v["limits"]["acquire_timeout"]["source"], "config");

    source.lock().unwrap().as_mut().unwrap().pgtide.listen = vec!["127.0.0.1:1".parse().unwrap()];
    let report = post(api.addr, "/v1/reload", Some(OPERATOR)).json();
    assert_eq!(
        report["restart"],
        serde_json::json!(["pgtide.listen"]),
        "{report}"
    );
    assert_eq!(report["needs_restart"], true);

    *source.lock().unwrap() = Err(vec!["pool.max_size: must be > 0".to_owned()]);
    let r = post(api.addr, "/v1/reload", Some(OPERATOR));
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "reload_rejected");
    assert_eq!(
        r.json()["error"]["problems"][0]["message"],
        "pool.max_size: must be > 0"
    );
}

#[test]
fn tokens_are_enforced_and_no_secret_is_served() {
    let cluster = cluster(Auth::ScramSha256);
    let p = PgtideBuilder::new(&cluster, DB)
        .set("databases.app.password", PASSWORD)
        .user(USER, PASSWORD)
        .set("pgtide.auth_type", "scram-sha-256")
        .start()
        .expect("pgtide starts");
    let api = Api::start(&p);
    let body = r#"{"max_size": 3}"#;
    assert_eq!(patch(api.addr, POOL, None, body).status, 401);
    let a = patch(api.addr, POOL, Some(VIEWER), body);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "forbidden");
    let a = get(api.addr, "/v1/pools", Some("wrong-token-wrong-token"));
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").is_some());
    let m = get(api.addr, "/metrics", None);
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains("pgtide_admin_auth_failures_total{reason=\"invalid\"} 1\n"),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("pgtide_admin_auth_failures_total{reason=\"forbidden\"} 1\n"));
    assert!(m
        .body
        .contains("pgtide_admin_auth_failures_total{reason=\"missing\"} 1\n"));

    // A client logged in with its password (SCRAM) and holding a server for a while.
    let port = p.port().to_string();
    let psql = std::thread::spawn(move || {
        pg_command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                USER,
                "-d",
                DB,
                "-Atc",
                "select pg_sleep(3)",
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let client = loop {
        let v = get(api.addr, "/v1/clients?state=active", Some(VIEWER)).json();
        if let Some(c) = v["clients"].as_array().and_then(|c| c.first()).cloned() {
            break c;
        }
        assert!(Instant::now() < deadline, "the psql client is listed: {v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(client["pool"], "app/app");
    let servers = get(api.addr, "/v1/servers?pool=app/app", Some(VIEWER)).json();
    assert!(
        servers["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["client"] == client["id"] && s["state"] == "active"),
        "{servers}"
    );
    let k = request(
        api.addr,
        "DELETE",
        &format!("/v1/clients/{}", client["id"]),
        Some(OPERATOR),
        None,
    );
    assert_eq!(k.status, 501, "{}", k.body);
    assert_eq!(k.json()["error"]["code"], "not_implemented");
    assert!(psql.join().unwrap().status.success());

    for path in [
        "/v1/config",
        "/v1/pools",
        "/v1/clients",
        "/v1/servers",
        "/v1/events",
        "/metrics",
    ] {
        let a = get(api.addr, path, Some(OPERATOR));
        assert_eq!(a.status, 200, "{path}");
        for secret in [PASSWORD, OPERATOR, VIEWER] {
            assert!(
                !a.body.contains(secret),
                "{path} shows a secret: {}",
                a.body
            );
        }
    }
    let config = get(api.addr, "/v1/config", Some(VIEWER)).json();
    assert_eq!(config["databases"]["app"]["password"], "<redacted>");
}
