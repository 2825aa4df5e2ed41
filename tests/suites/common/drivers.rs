//! The Python driver environment (asyncpg, psycopg 3) and the scripts in `tests/drivers/`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// This package's directory, as cargo gives it to the running test: the compile-time value is
/// only a fallback, because a test binary reused from a shared target directory may have been
/// built from another checkout.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The driver-test Python (asyncpg, psycopg 3), set up once per test process.
pub fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = manifest_dir().join("drivers/setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("runs tests/drivers/setup.sh");
        assert!(
            out.status.success(),
            "tests/drivers/setup.sh failed:\n{}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("python path").trim())
    })
}

/// A Command running `tests/drivers/<script>` with the driver Python.
pub fn driver_script(script: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(manifest_dir().join("drivers").join(script));
    cmd
}
