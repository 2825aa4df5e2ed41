//! Finding and running the PostgreSQL binaries.
//!
//! PostgreSQL refuses to run as root, and sessions and CI run as root. So server-side tools
//! (initdb, pg_ctl, postgres, pgbench if it should look like an ordinary client) are run as the
//! `postgres` OS user when our effective uid is 0, and directly otherwise. Instead of wrapping
//! them in `runuser` (a PAM session and an extra process per call) the child switches uid/gid
//! itself through [`CommandExt`], which drops supplementary groups the same way.
//!
//! Every PostgreSQL command the harness builds starts from [`pg_command`], which strips libpq's
//! `PG*` environment variables (`PGPORT`, `PGSSLMODE`, `PGOPTIONS`, …): a developer's shell must
//! not change what a test connects to.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::error::{HarnessError, Result};

/// Where the PostgreSQL 15 binaries live on Debian; override with `PGTIDE_PG_BIN_DIR`.
pub const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The OS user that owns data directories and server processes when we run as root.
pub const PG_OS_USER: &str = "postgres";

/// The directory holding initdb, pg_ctl, postgres, psql, pgbench: `$PGTIDE_PG_BIN_DIR` or
/// [`DEFAULT_PG_BIN_DIR`].
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("PGTIDE_PG_BIN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN_DIR))
}

/// The full path of one PostgreSQL binary, e.g. `pg_bin("pgbench")`.
pub fn pg_bin(name: &str) -> PathBuf {
    pg_bin_dir().join(name)
}

/// A `Command` for a PostgreSQL binary with libpq's `PG*` variables removed from its
/// environment (our own `PGTIDE_*` variables are kept). Runs as the current user; wrap it in
/// [`run_as_pg_user`] for server-side tools.
pub fn pg_command(name: &str) -> Command {
    let mut cmd = Command::new(pg_bin(name));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PG") && !k.starts_with("PGTIDE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// True when the effective uid is 0, i.e. server tools must switch to [`PG_OS_USER`].
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `cmd` run as [`PG_OS_USER`] when we are root; returns it unchanged otherwise.
///
/// Also sets `HOME`, `USER` and `LOGNAME` to that user's, and, unless the caller chose a working
/// directory, runs it in `/`: the caller's directory is often unreadable by `postgres`, and
/// initdb and pg_ctl complain about that. Pass absolute paths.
pub fn run_as_pg_user(mut cmd: Command) -> Result<Command> {
    if !running_as_root() {
        return Ok(cmd);
    }
    let user = pg_os_user()?;
    cmd.uid(user.uid)
        .gid(user.gid)
        .env("HOME", &user.home)
        .env("USER", PG_OS_USER)
        .env("LOGNAME", PG_OS_USER);
    if cmd.get_current_dir().is_none() {
        cmd.current_dir("/");
    }
    Ok(cmd)
}

/// Runs `cmd` to completion and returns its stdout; a non-zero exit becomes
/// [`HarnessError::Command`] carrying the command line and stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let output = output_of(cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Like [`run`], but hands back the whole `Output` (for callers that also read stderr).
pub fn output_of(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .output()
        .map_err(|e| HarnessError::io(format!("spawning `{}`", describe(cmd)), e))?;
    if output.status.success() {
        return Ok(output);
    }
    let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(HarnessError::Command {
        command: describe(cmd),
        status: output.status,
        stderr,
    })
}

/// The command line as a shell user would read it (for error messages).
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![shell_word(cmd.get_program())];
    parts.extend(cmd.get_args().map(shell_word));
    parts.join(" ")
}

fn shell_word(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// uid, gid and home directory of [`PG_OS_USER`].
#[derive(Debug, Clone)]
pub(crate) struct OsUser {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks up [`PG_OS_USER`] once per process.
pub(crate) fn pg_os_user() -> Result<OsUser> {
    static USER: OnceLock<Option<OsUser>> = OnceLock::new();
    USER.get_or_init(|| lookup_os_user(PG_OS_USER))
        .clone()
        .ok_or_else(|| HarnessError::NoSuchOsUser(PG_OS_USER.to_owned()))
}

fn lookup_os_user(name: &str) -> Option<OsUser> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it in and points its strings into buf.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the duration of the call and buf.len() is its size.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    let home = if pwd.pw_dir.is_null() {
        PathBuf::from("/")
    } else {
        // SAFETY: getpwnam_r succeeded, so pw_dir points at a NUL-terminated string in buf.
        PathBuf::from(
            unsafe { CStr::from_ptr(pwd.pw_dir) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    Some(OsUser {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home,
    })
}

/// Gives `path` (and, if `recursive`, everything below it) to [`PG_OS_USER`] when we are root,
/// so the server may write there. A no-op for other users.
pub(crate) fn give_to_pg_user(path: &Path, recursive: bool) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let user = pg_os_user()?;
    chown_tree(path, user.uid, user.gid, recursive)
}

fn chown_tree(path: &Path, uid: u32, gid: u32, recursive: bool) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| HarnessError::io(format!("chown {}", path.display()), e))?;
    if recursive && path.is_dir() && !path.is_symlink() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))?;
            chown_tree(&entry.path(), uid, gid, true)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_only_what_needs_it() {
        let mut cmd = Command::new("/bin/psql");
        cmd.args(["-c", "SELECT 1", "-p", "5432", "it's"]);
        assert_eq!(describe(&cmd), r"/bin/psql -c 'SELECT 1' -p 5432 'it'\''s'");
    }
}
