//! The `pgtide` binary as an operator meets it: `--version`, `check-config` on good and broken
//! files, `--set` overrides, and the daemon refusing a config file that is not there.
//!
//! Every run clears the environment (keeping only `PATH`) so a `PGTIDE_*` variable in the
//! developer's shell or in CI cannot change the outcome. None of these tests needs PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Exit code pgtide uses for an invalid configuration.
const EXIT_INVALID: i32 = 2;

/// This package's directory, as cargo gives it to the running test: the compile-time value is
/// only a fallback, because a test binary reused from a shared target directory may have been
/// built from another checkout.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The annotated example config shipped in `deploy/`.
fn example_config() -> PathBuf {
    manifest_dir().join("../../deploy/pgtide.example.toml")
}

/// `pgtide ARGS` with an empty environment apart from `PATH` (and `extra_env`).
fn pgtide_with_env(args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgtide"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(extra_env.iter().copied()).args(args);
    cmd.output().expect("run the pgtide binary")
}

fn pgtide(args: &[&str]) -> Output {
    pgtide_with_env(args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics with the whole output when the exit code is not `code`.
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit code {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A fresh directory under the system temp dir, removed when dropped (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pgtide-cli-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

#[test]
fn version_prints_the_crate_version() {
    let out = pgtide(&["--version"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.starts_with("pgtide ") && text.contains(env!("CARGO_PKG_VERSION")),
        "unexpected --version output: {text:?}"
    );
}

#[test]
fn example_config_is_ok() {
    let example = example_config();
    let out = pgtide(&["check-config", s(&example)]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("OK"), "no OK in stdout: {text:?}");
    assert!(stderr(&out).is_empty(), "stderr: {}", stderr(&out));

    // Same with --no-env (the flag the docs tell operators to use in scripts).
    let out = pgtide(&["check-config", "--no-env", s(&example)]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("OK"));
}

#[test]
fn environment_layer_is_read_unless_no_env() {
    let example = example_config();
    let env = [("PGTIDE_POOL__MAX_SIZE", "0")];

    let out = pgtide_with_env(&["check-config", s(&example)], &env);
    assert_exit(&out, EXIT_INVALID);
    let err = stderr(&out);
    assert!(err.contains("pool.max_size"), "stderr: {err}");
    assert!(
        err.contains("PGTIDE_POOL__MAX_SIZE"),
        "the bad value's source is not named: {err}"
    );

    let out = pgtide_with_env(&["check-config", "--no-env", s(&example)], &env);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("OK"));
}

#[test]
fn broken_config_lists_every_problem_with_its_key() {
    let dir = TempDir::new("broken");
    let file = dir.write(
        "broken.toml",
        r#"
[pgtide]
auth_type = "scram-sha-256"
auth_file = "no-such-users.toml"

[pool]
acquire_timeout = "5 parsecs"
min_size = 30
max_size = 10
max_szie = 3

[databases.app]
host = "127.0.0.1"
"#,
    );
    let out = pgtide(&["check-config", s(&file)]);
    assert_exit(&out, EXIT_INVALID);
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    let err = stderr(&out);
    for (key, detail) in [
        ("pool.acquire_timeout", "5 parsecs"),
        ("pool.min_size", "max_size"),
        ("pool.max_szie", "unknown field"),
        ("pgtide.auth_file", "no-such-users.toml"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no problem reported for {key}:\n{err}"));
        assert!(
            line.contains(detail),
            "the problem for {key} does not mention {detail:?}: {line}"
        );
    }
    assert!(
        err.contains("4 configuration problem"),
        "expected exactly four problems:\n{err}"
    );
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    let dir = TempDir::new("syntax");
    let file = dir.write(
        "syntax.toml",
        "[pgtide]\nauth_type = \"trust\"\n\n[pool]\nmax_size = = 3\n",
    );
    let out = pgtide(&["check-config", s(&file)]);
    assert_exit(&out, EXIT_INVALID);
    let err = stderr(&out);
    assert!(err.contains("syntax.toml"), "file not named: {err}");
    assert!(err.contains("TOML"), "not called a TOML error: {err}");
    assert!(
        err.contains("line 5") && err.contains("column 12"),
        "line/column missing: {err}"
    );
}

#[test]
fn missing_file_is_one_line_naming_it() {
    let dir = TempDir::new("missing");
    let file = dir.path("absent.toml");
    let out = pgtide(&["check-config", s(&file)]);
    assert_exit(&out, EXIT_INVALID);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.contains(s(&file)), "file not named: {err}");
    assert!(err.contains("cannot read"), "unclear error: {err}");
}

#[test]
fn set_override_is_validated_and_named() {
    let example = example_config();
    let out = pgtide(&["check-config", "--set", "pool.max_size=0", s(&example)]);
    assert_exit(&out, EXIT_INVALID);
    let err = stderr(&out);
    assert!(err.contains("pool.max_size"), "key not named: {err}");
    assert!(err.contains("command line"), "source not named: {err}");

    // A valid override keeps the example valid.
    let out = pgtide(&["check-config", "--set", "pool.max_size=50", s(&example)]);
    assert_exit(&out, 0);

    // An override without '=' is refused with the expected form.
    let out = pgtide(&["check-config", "--set", "pool.max_size", s(&example)]);
    assert_exit(&out, EXIT_INVALID);
    assert!(
        stderr(&out).contains("KEY=VALUE"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn daemon_with_missing_config_exits_2() {
    let dir = TempDir::new("daemon");
    let file = dir.path("absent.toml");
    let out = pgtide(&["--config", s(&file)]);
    assert_exit(&out, EXIT_INVALID);
    let err = stderr(&out);
    assert!(err.contains(s(&file)), "file not named: {err}");
    assert!(err.contains("cannot read config file"), "unclear: {err}");
    assert!(
        !err.contains("pgtide ready"),
        "the daemon must not start: {err}"
    );
}
