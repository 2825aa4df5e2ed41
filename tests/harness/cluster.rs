//! A running throwaway cluster: where it is, how to reach it, how to stop, restart or kill it,
//! and the guarantee that it is gone when the value is dropped.
//!
//! The server's state lives outside this value (in `postmaster.pid`), so every method takes
//! `&self`: a test can share one `Arc<Cluster>` with a pgtide instance and still kill the
//! server under it.

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::builder::{Auth, ClusterBuilder};
use crate::connstr;
use crate::error::{HarnessError, Result};
use crate::pgbin::{pg_command, run, run_as_pg_user};
use crate::process::{kill_tree, pid_alive, postmaster_pid_in, signal, wait_gone};
use crate::psql::{psql_command, quote_literal};

/// The address every cluster listens on.
pub const HOST: &str = "127.0.0.1";

/// How long pg_ctl may take to start or stop a server, and we to see processes die.
const PG_CTL_TIMEOUT_SECS: u32 = 60;
const DEATH_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL server started by [`ClusterBuilder::start`] from a copy of the initdb template,
/// with its own directory, port, settings and log.
///
/// Dropping it (also while unwinding from a panic) shuts the server down immediately and
/// deletes its directory.
#[derive(Debug)]
pub struct Cluster {
    /// `<base>/pgtide-pg-<pid>-<n>`: holds `data/`, the socket dir `s/` and `postgres.log`.
    pub(crate) root: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) socket_dir: PathBuf,
    pub(crate) log_path: PathBuf,
    /// Chosen once at first start, kept across restarts.
    pub(crate) port: u16,
    /// Certificate and key paths when TLS is on.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    pub(crate) spec: ClusterBuilder,
}

impl Cluster {
    /// Starts building a cluster; see [`ClusterBuilder`].
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::new()
    }

    /// The TCP port on 127.0.0.1; the same across stop/start/restart/kill9.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The unix socket directory (`host=` for a socket connection).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory (PGDATA).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The cluster's own directory, removed on drop; a place for a test's scratch files too.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The server log (stderr of the postmaster, appended across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The authentication method for TCP clients other than `postgres`.
    pub fn auth(&self) -> Auth {
        self.spec.auth
    }

    /// The server certificate (PEM) when built with `.tls(true)`; self-signed, so it is also
    /// the root to trust (`sslrootcert=` with `sslmode=verify-full`).
    pub fn tls_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|(cert, _)| cert.as_path())
    }

    /// The server's private key (PEM), e.g. to give a pgtide listener the same identity.
    pub fn tls_key_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|(_, key)| key.as_path())
    }

    /// `host=127.0.0.1 port=… user=… password=… dbname=…` for tokio-postgres, psql, pgbench.
    pub fn conn_string(&self, user: &str, password: &str, db: &str) -> String {
        connstr::conn_string(HOST, self.port, user, Some(password), db)
    }

    /// `postgres://user:password@127.0.0.1:port/db`, percent-encoded.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        connstr::url(HOST, self.port, user, Some(password), db)
    }

    /// A TCP connection string for the superuser `postgres` (trusted, no password).
    pub fn superuser_conn_string(&self, db: &str) -> String {
        connstr::conn_string(HOST, self.port, "postgres", None, db)
    }

    /// Runs `sql` as `postgres` in database `postgres` over the unix socket and returns trimmed
    /// stdout (`-X -A -t -q`, so rows only, `|`-separated). Fails with psql's stderr.
    pub fn superuser_psql(&self, sql: &str) -> Result<String> {
        self.superuser_psql_in("postgres", &[sql])
    }

    /// Like [`superuser_psql`](Self::superuser_psql) in database `db`, with each statement in
    /// its own `-c` (its own transaction, so `CREATE DATABASE` can be among them).
    pub fn superuser_psql_in(&self, db: &str, statements: &[&str]) -> Result<String> {
        let mut cmd = psql_command();
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db]);
        for sql in statements {
            cmd.arg("-c").arg(sql);
        }
        Ok(run(&mut cmd)?.trim().to_owned())
    }

    /// Client backends connected now (optionally only those of `user`), not counting the
    /// query's own.
    ///
    /// # Panics
    /// If the server cannot be queried: the count is only asked of a running cluster.
    pub fn connection_count(&self, user: Option<&str>) -> usize {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid(){}",
            user_filter(user)
        );
        let out = self
            .superuser_psql(&sql)
            .unwrap_or_else(|e| panic!("connection_count: {e}"));
        out.parse()
            .unwrap_or_else(|e| panic!("connection_count: unexpected output {out:?}: {e}"))
    }

    /// Terminates client backends (optionally only `user`'s) with `pg_terminate_backend`, as an
    /// administrator or a failover would; returns how many. Clients see SQLSTATE 57P01.
    pub fn terminate_connections(&self, user: Option<&str>) -> Result<usize> {
        let sql = format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid(){}) AS t",
            user_filter(user)
        );
        let out = self.superuser_psql(&sql)?;
        Ok(out.parse().unwrap_or(0))
    }

    /// The postmaster's PID from `postmaster.pid`, if the file exists (it outlives a kill9
    /// until the next start or the harness's clean-up; check [`is_running`](Self::is_running)).
    pub fn postmaster_pid(&self) -> Option<u32> {
        postmaster_pid_in(&self.data_dir)
    }

    /// True if the postmaster recorded in `postmaster.pid` is alive.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(pid_alive)
    }

    /// Starts the stopped (or killed) server on the same port and waits until it accepts TCP
    /// connections. Crash recovery after [`kill9`](Self::kill9) happens here.
    pub fn start(&self) -> Result<()> {
        if self.is_running() {
            return Err(HarnessError::AlreadyRunning(self.data_dir.clone()));
        }
        self.remove_stale_lock_files();
        let mut pg_ctl = pg_command("pg_ctl");
        pg_ctl
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-s", "-t", &PG_CTL_TIMEOUT_SECS.to_string()]);
        if let Err(e) = run(&mut run_as_pg_user(pg_ctl)?) {
            return Err(self.start_error(e.to_string()));
        }
        self.wait_for_tcp(Duration::from_secs(10))
    }

    /// `pg_ctl stop -m fast`: disconnects clients (they see 57P01) and shuts down cleanly.
    /// Does nothing if the server is not running.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let mut pg_ctl = pg_command("pg_ctl");
        pg_ctl.arg("stop").arg("-D").arg(&self.data_dir).args([
            "-m",
            "fast",
            "-w",
            "-s",
            "-t",
            &PG_CTL_TIMEOUT_SECS.to_string(),
        ]);
        run(&mut run_as_pg_user(pg_ctl)?)?;
        Ok(())
    }

    /// [`stop`](Self::stop) then [`start`](Self::start), on the same port.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Kills the postmaster and all its processes with SIGKILL at once, like a machine losing
    /// power: clients see their connections reset, with no ErrorResponse. Waits until every
    /// process is gone and removes the stale lock files, so [`start`](Self::start) works next
    /// (running crash recovery). Does nothing if the server is not running.
    pub fn kill9(&self) -> Result<()> {
        let Some(pm) = self.postmaster_pid().filter(|&p| pid_alive(p)) else {
            return Ok(());
        };
        if !kill_tree(pm, DEATH_TIMEOUT) {
            return Err(HarnessError::Timeout {
                what: format!("postmaster {pm} and its children to die after SIGKILL"),
                waited: DEATH_TIMEOUT,
            });
        }
        self.remove_stale_lock_files();
        Ok(())
    }

    /// Removes `postmaster.pid` and the socket lock file if the PID in them is dead. PostgreSQL
    /// removes stale ones itself unless that PID is a zombie or was recycled, which in a
    /// container whose PID 1 never reaps happens after every kill.
    fn remove_stale_lock_files(&self) {
        match self.postmaster_pid() {
            Some(pm) if !pid_alive(pm) => {}
            _ => return,
        }
        let socket = self.socket_dir.join(format!(".s.PGSQL.{}", self.port));
        let socket_lock = self.socket_dir.join(format!(".s.PGSQL.{}.lock", self.port));
        for path in [self.data_dir.join("postmaster.pid"), socket_lock, socket] {
            let _ = std::fs::remove_file(path);
        }
    }

    fn wait_for_tcp(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(format!(
                    "pg_ctl reported success but nothing accepts TCP connections after {timeout:?}"
                )));
            }
            sleep(Duration::from_millis(10));
        }
    }

    fn start_error(&self, reason: String) -> HarnessError {
        HarnessError::Start {
            data_dir: self.data_dir.clone(),
            port: self.port,
            reason,
            log_tail: self.log_tail(30),
        }
    }

    /// Immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate` sends, without spawning
    /// pg_ctl), then SIGKILL for anything still alive.
    fn shut_down_hard(&self) {
        let Some(pm) = self.postmaster_pid().filter(|&p| pid_alive(p)) else {
            return;
        };
        signal(pm, libc::SIGQUIT);
        if !wait_gone(&[pm], DEATH_TIMEOUT) {
            kill_tree(pm, DEATH_TIMEOUT);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shut_down_hard();
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "pgtide_harness: could not remove {}: {e}",
                    self.root.display()
                );
            }
        }
    }
}

fn user_filter(user: Option<&str>) -> String {
    user.map(|u| format!(" AND usename = {}", quote_literal(u)))
        .unwrap_or_default()
}
