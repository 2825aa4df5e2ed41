//! The admin API of the real daemon binary and of `pgtide demo`: the listener on
//! `admin.listen`, tokens from `admin.tokens_file`, `/metrics` with the global recorder after
//! a workload that causes every documented metric, and a graceful shutdown through the API.

#[path = "../../admin-api/tests/common/http.rs"]
mod http;
#[path = "../../admin-api/tests/common/prom.rs"]
mod prom;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgtide_harness::{free_port, Auth, Cluster};

const OPERATOR: &str = "operator-token-daemon-0001";
const VIEWER: &str = "viewer-token-daemon-00001";

/// A child process whose output lines are collected; SIGTERM then kill on drop.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgtide");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        Proc { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The first line containing `needle`, waiting up to `timeout`.
    fn line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return Some(l.clone());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Waits for the exit; its code.
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal("-TERM");
            if self.wait(Duration::from_secs(20)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgtide-admin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_daemon_serves_the_api_and_every_documented_metric_then_shuts_down_through_it() {
    let cluster = Cluster::builder()
        .auth(Auth::Trust)
        .user("app", "app-password")
        .database_owned_by("app", "app")
        .start()
        .expect("cluster");
    let dir = workdir("metrics");
    let tokens = dir.join("admin-tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"sre\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n\n\
             [[tokens]]\nname = \"dash\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let admin_port = free_port();
    let dead_port = free_port();
    let config = format!(
        "[pgtide]\nlisten = [\"127.0.0.1:{port}\"]\nauth_type = \"trust\"\nbreaker_threshold = 1\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntokens_file = {tokens:?}\n\n\
         [pool]\nmax_size = 4\nmax_prepared_statements = 1\nslow_query_threshold = \"5ms\"\n\n\
         [pool.adaptive]\nlearn_budget = true\nbudget_interval = \"1s\"\n\n\
         [databases.app]\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [databases.gone]\nhost = \"127.0.0.1\"\nport = {dead_port}\nconnect_timeout = \"1s\"\n",
        cluster.port()
    );
    let file = dir.join("pgtide.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgtide"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["--config", &file.display().to_string()]);
    let mut daemon = Proc::spawn(cmd);
    let ready = daemon.line("pgtide ready", Duration::from_secs(20));
    assert!(ready.is_some(), "{}", daemon.log());
    assert!(
        daemon.log().contains("admin API listening"),
        "{}",
        daemon.log()
    );
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();

    assert_eq!(http::get(admin, "/healthz", None).status, 200);
    assert_eq!(http::get(admin, "/v1/pools", None).status, 401);
    assert_eq!(
        http::get(admin, "/v1/pools", Some("not-a-valid-token-00")).status,
        401
    );
    let a = http::patch(
        admin,
        "/v1/pools/app/app",
        Some(VIEWER),
        r#"{"max_size": 3}"#,
    );
    assert_eq!(a.status, 403, "{}", a.body);

    workload(port);

    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .unwrap();
    let documented = prom::documented(&doc);
    assert!(documented.len() >= 25, "{documented:?}");
    // The controller ticks and the budget is read every second: scrape until both showed up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (m, families, missing) = loop {
        let m = http::get(admin, "/metrics", None);
        assert_eq!(m.status, 200);
        let families = prom::parse(&m.body).unwrap_or_else(|e| panic!("{e}\n{}", m.body));
        let missing: Vec<String> = documented
            .iter()
            .filter(|name| {
                families
                    .get(*name)
                    .is_none_or(|(_, samples)| samples.is_empty())
            })
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (m, families, missing);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        missing.is_empty(),
        "documented but not served: {missing:?}\n{}",
        m.body
    );
    let undocumented: Vec<&String> = families
        .keys()
        .filter(|k| !documented.contains(k))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in docs/metrics.md: {undocumented:?}"
    );
    let has = |name: &str, label: (&str, &str)| {
        families[name]
            .1
            .iter()
            .any(|s| s.labels.get(label.0).map(String::as_str) == Some(label.1) && s.value > 0.0)
    };
    assert!(
        has("pgtide_failures_total", ("pool", "gone/app")),
        "{}",
        m.body
    );
    assert!(has(
        "pgtide_breaker_open",
        ("server", &format!("127.0.0.1:{dead_port}"))
    ));
    assert!(has(
        "pgtide_admin_auth_failures_total",
        ("reason", "invalid")
    ));
    assert!(has(
        "pgtide_admin_auth_failures_total",
        ("reason", "forbidden")
    ));
    assert!(has("pgtide_acquires_total", ("pool", "app/app")));
    for secret in [OPERATOR, VIEWER, "app-password"] {
        assert!(
            !m.body.contains(secret) && !daemon.log().contains(secret),
            "{secret} leaked"
        );
    }
    // The failure is in the event ring too, and /readyz says which database is unreachable.
    let ev = http::get(admin, "/v1/events?pool=gone/app", Some(VIEWER)).json();
    assert!(!ev["events"].as_array().unwrap().is_empty(), "{ev}");
    let r = http::get(admin, "/readyz", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["databases"][1]["database"], "gone");

    // Writes are audited by token name, never by token.
    let a = http::patch(
        admin,
        "/v1/pools/app/app",
        Some(OPERATOR),
        r#"{"max_size": 3}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let audit = daemon
        .line("admin change", Duration::from_secs(5))
        .expect("an audit line");
    assert!(
        audit.contains("sre") && audit.contains("max_size") && audit.contains("4 (config)"),
        "{audit}"
    );

    // The tokens file is read again on reload: a new viewer token works, the old one is gone.
    let fresh = "viewer-token-after-reload-01";
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"sre\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n\n\
             [[tokens]]\nname = \"dash\"\nrole = \"viewer\"\ntoken = \"{fresh}\"\n"
        ),
    )
    .unwrap();
    let r = http::post(admin, "/v1/reload", Some(OPERATOR));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(http::get(admin, "/v1/pools", Some(fresh)).status, 200);
    assert_eq!(http::get(admin, "/v1/pools", Some(VIEWER)).status, 401);

    let s = http::post(admin, "/v1/shutdown", Some(OPERATOR));
    assert_eq!(s.status, 202, "{}", s.body);
    assert_eq!(
        daemon.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("pgtide stopped"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Causes every event-sourced metric: a failure and an open breaker (database `gone`), a slow
/// query, prepared statements (one known, one re-prepared on a second server, one evicted).
fn workload(port: u16) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let connect = |db: &str| {
            let dsn = format!("host=127.0.0.1 port={port} user=app dbname={db}");
            async move {
                let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                Ok::<_, tokio_postgres::Error>(client)
            }
        };
        let a = connect("app").await.expect("connect through pgtide");
        let b = connect("app").await.expect("connect through pgtide");
        a.simple_query("select pg_sleep(0.02)").await.unwrap();
        let one = a.prepare("select 1::int").await.unwrap();
        let two = a.prepare("select 2::int").await.unwrap();
        a.query(&one, &[]).await.unwrap();
        // b holds the server a just used, so a's next statement runs on another one, which
        // lacks it; with max_prepared_statements = 1, the second evicts the first.
        b.simple_query("begin").await.unwrap();
        b.simple_query("select 1").await.unwrap();
        a.query(&one, &[]).await.unwrap();
        a.query(&two, &[]).await.unwrap();
        b.simple_query("commit").await.unwrap();
        // Nothing listens behind database "gone": a failure, and its breaker opens.
        if let Ok(c) = connect("gone").await {
            assert!(c.simple_query("select 1").await.is_err());
        }
    });
}

#[test]
fn the_demo_prints_its_admin_url_and_tokens_that_work() {
    let port = free_port();
    // Something else holds the admin port: the demo takes a free one and says which.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgtide"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--set", &format!("admin.listen=127.0.0.1:{busy_port}")]);
    let mut demo = Proc::spawn(cmd);
    let token = |label: &str| {
        let line = demo
            .line(label, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no {label} line:\n{}", demo.log()));
        line.rsplit(' ').next().unwrap().to_owned()
    };
    let viewer = token("viewer token:");
    let operator = token("operator token:");
    assert_ne!(viewer, operator);
    assert!(viewer.len() >= 32);
    let url = demo.line("admin API:  ", Duration::from_secs(1)).unwrap();
    assert!(
        demo.log().contains("address busy, using a free port"),
        "{}",
        demo.log()
    );
    let admin: SocketAddr = url
        .split("http://")
        .nth(1)
        .and_then(|u| u.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin URL in {url:?}"));
    assert_ne!(admin.port(), busy_port, "{url}");
    assert_eq!(http::get(admin, "/v1/pools", Some(&viewer)).status, 200);
    let body = r#"{"max_size": 4}"#;
    assert_eq!(
        http::patch(admin, "/v1/pools/demo/demo", Some(&viewer), body).status,
        403
    );
    let a = http::patch(admin, "/v1/pools/demo/demo", Some(&operator), body);
    assert_eq!(a.status, 200, "{}", a.body);
    let audit = demo
        .line("admin change", Duration::from_secs(5))
        .expect("an audit line");
    assert!(
        audit.contains("demo-operator") && !audit.contains(&operator),
        "{audit}"
    );
    demo.signal("-INT");
    assert_eq!(
        demo.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        demo.log()
    );
    assert!(demo.log().contains("cluster removed"));
    drop(busy);
}
