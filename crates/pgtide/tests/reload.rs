//! SIGHUP on the real daemon: `log.level` follows the file, and a runtime override (restored
//! from `admin.state_file` at start-up) survives the reload, which names it in its report.
//! Starts the `pgtide` binary in front of a throwaway PostgreSQL (the test harness).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgtide_harness::{free_port, psql, Auth, Cluster};

/// The daemon, its stderr lines, and its files; stopped (SIGTERM, then kill) on drop.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgtide"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args(["--config", &dir.join("pgtide.toml").display().to_string()])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start pgtide");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let d = Daemon {
            child,
            lines,
            dir: dir.to_owned(),
        };
        assert!(
            d.wait_for("pgtide ready", Duration::from_secs(20)),
            "{}",
            d.log()
        );
        d
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(needle) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(port: u16, pg: u16, level: &str, max_size: u32, state: &Path) -> String {
    config_with(port, pg, level, max_size, state, 1)
}

/// With `workers`: a key that needs a restart, so its reload line is a warning.
fn config_with(
    port: u16,
    pg: u16,
    level: &str,
    max_size: u32,
    state: &Path,
    workers: u32,
) -> String {
    format!(
        "[pgtide]\nlisten = [\"127.0.0.1:{port}\"]\nauth_type = \"trust\"\nworkers = {workers}\n\n\
         [log]\nlevel = \"{level}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_file = {state:?}\n\n\
         [pool]\nmax_size = {max_size}\n\n\
         [databases.app]\nhost = \"127.0.0.1\"\nport = {pg}\n"
    )
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgtide-reload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn log_level_changes_on_sighup() {
    let pg = Cluster::builder()
        .auth(Auth::Trust)
        .user("app", "x")
        .database_owned_by("app", "app")
        .start()
        .unwrap();
    let dir = workdir("level");
    let state = dir.join("state.toml");
    let port = free_port();
    std::fs::write(
        dir.join("pgtide.toml"),
        config(port, pg.port(), "info", 5, &state),
    )
    .unwrap();
    let d = Daemon::start(&dir);
    // To warn. The reload's warning (a key that needs a restart) shows it was applied; its
    // info summary is not logged any more.
    let warn = config_with(port, pg.port(), "warn", 5, &state, 2);
    std::fs::write(dir.join("pgtide.toml"), warn).unwrap();
    d.signal("-HUP");
    assert!(
        d.wait_for("needs a restart", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        d.count("config reloaded"),
        0,
        "info suppressed at warn:\n{}",
        d.log()
    );
    // Back to info: the next reload's summary is logged.
    let info = config_with(port, pg.port(), "info", 5, &state, 1);
    std::fs::write(dir.join("pgtide.toml"), info).unwrap();
    d.signal("-HUP");
    assert!(
        d.wait_for("config reloaded", Duration::from_secs(10)),
        "{}",
        d.log()
    );
}

#[test]
fn a_runtime_override_survives_sighup_and_the_report_names_it() {
    let pg = Cluster::builder()
        .auth(Auth::Trust)
        .user("app", "x")
        .database_owned_by("app", "app")
        .start()
        .unwrap();
    let dir = workdir("override");
    let state = dir.join("state.toml");
    std::fs::write(&state, "[pools.\"app/app\"]\nmax_size = 1\n").unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("pgtide.toml"),
        config(port, pg.port(), "info", 5, &state),
    )
    .unwrap();
    let d = Daemon::start(&dir);
    let through = format!("host=127.0.0.1 port={port} user=app dbname=app");
    assert_eq!(
        psql(&through, "select 1").unwrap(),
        "1",
        "the pool exists now"
    );
    std::fs::write(
        dir.join("pgtide.toml"),
        config(port, pg.port(), "info", 8, &state),
    )
    .unwrap();
    d.signal("-HUP");
    assert!(
        d.wait_for("config reloaded", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    let masked: Vec<String> = d
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("still masks"))
        .cloned()
        .collect();
    assert!(
        masked
            .iter()
            .any(|l| l.contains("app/app") && l.contains("max_size")),
        "{}",
        d.log()
    );
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(kept.contains("max_size = 1"), "{kept}");
    // In force: one server only, so a second transaction waits for the first to end.
    let holder = {
        let through = through.clone();
        std::thread::spawn(move || psql(&through, "select pg_sleep(2)").unwrap())
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(psql(&through, "select 2").unwrap(), "2");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "max_size 1 (the override), not 8 (the file): waited only {:?}",
        started.elapsed()
    );
    holder.join().unwrap();
}
