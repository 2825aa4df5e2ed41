//! The one error type of the harness.
//!
//! A harness failure is almost always "some PostgreSQL tool said no", and the test author needs
//! to see what was run and what it printed, not just "exit status 1". So every variant carries
//! its context: the command line, the exit status, stderr, or the tail of the server log.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong while preparing, starting, stopping or querying a throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A filesystem or process-spawn operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing, with the path involved.
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An external command (initdb, pg_ctl, psql, openssl, cp, …) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Command {
        /// The command line, as it would be typed.
        command: String,
        status: ExitStatus,
        /// What the command wrote on stderr (and stdout, when stderr was empty).
        stderr: String,
    },

    /// The server did not come up; the log tail usually says why.
    #[error("PostgreSQL in {data_dir} did not start on port {port}: {reason}\n--- server log (tail) ---\n{log_tail}")]
    Start {
        data_dir: PathBuf,
        port: u16,
        reason: String,
        log_tail: String,
    },

    /// Something did not happen within the time the harness allows for it.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },

    /// `start()` on a cluster whose postmaster is alive.
    #[error("the cluster in {0} is already running")]
    AlreadyRunning(PathBuf),

    /// The shared initdb template could not be prepared (the first failure is remembered and
    /// repeated to every later caller in the process, so this carries its text).
    #[error("preparing the initdb template failed: {0}")]
    Template(String),

    /// pgtide under test could not be configured or started.
    #[error("pgtide under test: {0}")]
    Pgtide(String),

    /// The OS user that must own the server processes does not exist.
    #[error("OS user `{0}` not found (PostgreSQL refuses to run as root; the harness runs it as this user)")]
    NoSuchOsUser(String),
}

/// `Result` with [`HarnessError`] as the default error.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

impl HarnessError {
    /// Wraps an `io::Error` with what the harness was doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}
