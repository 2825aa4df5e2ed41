//! Where clusters live on disk, and the sweep that removes the ones a killed test left behind.
//!
//! Every directory a test process creates is named `pgtide-pg-<pid>-<suffix>` with the PID of
//! that process. `Drop` removes it in the normal case; if the process died by SIGKILL (a
//! timed-out CI job, a developer's Ctrl-\), the next test process that starts a cluster sees
//! that the owning PID is gone, stops any postmaster still running in the directory and removes
//! it. The shared initdb template (`pgtide-pg-template-…`) has no PID and is kept on purpose.
//!
//! Unix socket paths are limited to about 107 bytes, and the socket lives inside the cluster
//! directory, so a long `$TMPDIR` is replaced by `/tmp`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::process::{cmdline, kill_tree, pid_alive, postmaster_pid_in};

/// Prefix of every directory the harness creates in [`base_dir`].
pub(crate) const DIR_PREFIX: &str = "pgtide-pg-";

/// Longest base directory that keeps `<base>/pgtide-pg-<pid>-<n>/s/.s.PGSQL.<port>` well
/// under the kernel's limit for socket paths.
const MAX_BASE_LEN: usize = 64;

/// The directory that holds clusters and the template: `$PGTIDE_TEST_TMPDIR`, else the system
/// temp dir, else `/tmp` when either is too long for unix socket paths.
pub fn base_dir() -> PathBuf {
    let candidate = std::env::var_os("PGTIDE_TEST_TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    if candidate.as_os_str().len() > MAX_BASE_LEN {
        PathBuf::from("/tmp")
    } else {
        candidate
    }
}

/// Creates a fresh directory `<base>/pgtide-pg-<our pid>-<kind><n>` and returns its path.
pub(crate) fn create_owned_dir(kind: &str) -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = base_dir();
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{DIR_PREFIX}{pid}-{kind}{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // Left over from an earlier process that had our PID: take the next number.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(HarnessError::io(format!("creating {}", dir.display()), e)),
        }
    }
}

/// The PID that owns a harness directory name, if it is one (`pgtide-pg-<pid>-…`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(DIR_PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Runs [`sweep_stale_clusters`] the first time any cluster of this process is created.
pub(crate) fn sweep_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        sweep_stale_clusters();
    });
}

/// Removes harness directories whose owning test process is gone, first killing a postmaster
/// still running in one. Returns how many directories it removed.
///
/// A postmaster is only killed if its command line names that directory's data dir, so a PID
/// recycled by an unrelated process is left alone.
pub fn sweep_stale_clusters() -> usize {
    let base = base_dir();
    let Ok(entries) = std::fs::read_dir(&base) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if owner == me || pid_alive(owner) {
            continue;
        }
        let dir = entry.path();
        stop_orphan_postmaster(&dir.join("data"));
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn stop_orphan_postmaster(data_dir: &Path) {
    let Some(pm) = postmaster_pid_in(data_dir) else {
        return;
    };
    let ours = cmdline(pm).is_some_and(|c| c.contains(&*data_dir.to_string_lossy()));
    if pid_alive(pm) && ours {
        kill_tree(pm, Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_harness_names() {
        assert_eq!(owner_pid("pgtide-pg-1234-7"), Some(1234));
        assert_eq!(owner_pid("pgtide-pg-1234-template3"), Some(1234));
        assert_eq!(owner_pid("pgtide-pg-template-v1-15"), None);
        assert_eq!(owner_pid("something-else-1234-1"), None);
    }

    #[test]
    fn base_dir_is_short_enough_for_sockets() {
        assert!(base_dir().as_os_str().len() <= MAX_BASE_LEN);
    }
}
