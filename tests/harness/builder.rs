//! What a test asks for: [`ClusterBuilder`] collects the options, [`ClusterBuilder::start`]
//! turns them into a running [`Cluster`].

use crate::cluster::Cluster;
use crate::error::Result;

/// How TCP clients other than the superuser authenticate (the `pg_hba.conf` method), and how
/// passwords of created users are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Auth {
    /// No password asked.
    Trust,
    /// Cleartext password over the wire, checked against a SCRAM verifier.
    Password,
    /// MD5 challenge; users are created with `password_encryption = md5` so their stored
    /// secret really is an md5 hash (otherwise PostgreSQL would silently use SCRAM instead).
    Md5,
    /// SCRAM-SHA-256, PostgreSQL's and pgtide's default.
    #[default]
    ScramSha256,
}

impl Auth {
    /// The method name in `pg_hba.conf`.
    pub fn hba_method(self) -> &'static str {
        match self {
            Auth::Trust => "trust",
            Auth::Password => "password",
            Auth::Md5 => "md5",
            Auth::ScramSha256 => "scram-sha-256",
        }
    }

    /// The `password_encryption` setting that makes stored secrets match the method.
    pub(crate) fn password_encryption(self) -> &'static str {
        match self {
            Auth::Md5 => "md5",
            _ => "scram-sha-256",
        }
    }
}

/// A user to create: name and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserSpec {
    pub name: String,
    pub password: String,
}

/// A database to create; `owner: None` means the first user (or `postgres` if there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DatabaseSpec {
    pub name: String,
    pub owner: Option<String>,
}

/// Options for a throwaway cluster. Every cluster gets its own directory, port and settings.
///
/// ```no_run
/// use pgtide_harness::{Auth, Cluster};
/// let pg = Cluster::builder()
///     .auth(Auth::Md5)
///     .user("app", "secret")
///     .database("app")
///     .max_connections(20)
///     .setting("log_min_messages", "warning")
///     .start()?;
/// let dsn = pg.conn_string("app", "secret", "app");
/// # Ok::<(), pgtide_harness::HarnessError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until .start()"]
pub struct ClusterBuilder {
    pub(crate) auth: Auth,
    pub(crate) users: Vec<UserSpec>,
    pub(crate) databases: Vec<DatabaseSpec>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) tls: bool,
    pub(crate) tls_required: bool,
    pub(crate) hba_lines: Vec<String>,
}

impl ClusterBuilder {
    /// Defaults: SCRAM-SHA-256 for TCP clients, no extra users or databases, PostgreSQL's own
    /// settings, no TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// The authentication method for TCP clients other than `postgres` (who is always trusted
    /// from 127.0.0.1 and over the unix socket, for the harness's own work).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Creates a login role with this password after the server starts.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push(UserSpec {
            name: name.into(),
            password: password.into(),
        });
        self
    }

    /// Creates a database owned by the first user given with [`user`](Self::user) (or by
    /// `postgres` if there is none).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.databases.push(DatabaseSpec {
            name: name.into(),
            owner: None,
        });
        self
    }

    /// Creates a database owned by `owner` (a user from [`user`](Self::user) or `postgres`).
    pub fn database_owned_by(mut self, name: impl Into<String>, owner: impl Into<String>) -> Self {
        self.databases.push(DatabaseSpec {
            name: name.into(),
            owner: Some(owner.into()),
        });
        self
    }

    /// `max_connections`. Remember that `superuser_reserved_connections` (3 by default) of them
    /// are kept for superusers: ordinary users get `n - 3`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Any `postgresql.conf` setting; applied after the harness's own, so it wins.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Settings for benchmark clusters: no fsync, no synchronous commit, no full-page writes.
    /// Measures the pooler rather than the disk; the data does not survive a crash.
    pub fn bench_profile(self) -> Self {
        self.setting("fsync", "off")
            .setting("synchronous_commit", "off")
            .setting("full_page_writes", "off")
    }

    /// Turns on `ssl` with a self-signed certificate (SAN `IP:127.0.0.1`, `DNS:localhost`)
    /// generated by the `openssl` CLI; see [`Cluster::tls_cert_path`]. Plain TCP still works
    /// unless [`require_tls`](Self::require_tls) is set too.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        if !on {
            self.tls_required = false;
        }
        self
    }

    /// Makes the `pg_hba.conf` line for ordinary users `hostssl`, so plain TCP connections are
    /// refused with 28000. Implies [`tls(true)`](Self::tls).
    pub fn require_tls(mut self, required: bool) -> Self {
        self.tls_required = required;
        if required {
            self.tls = true;
        }
        self
    }

    /// A raw `pg_hba.conf` line placed before the harness's own lines (first match wins), e.g.
    /// `"hostssl app app 127.0.0.1/32 scram-sha-256"` or `"host all blocked 127.0.0.1/32 reject"`.
    pub fn hba_line(mut self, line: impl Into<String>) -> Self {
        self.hba_lines.push(line.into());
        self
    }

    /// Creates the cluster from the shared template, starts it on a free port and creates the
    /// users and databases. The returned [`Cluster`] stops the server and deletes its directory
    /// when dropped.
    pub fn start(self) -> Result<Cluster> {
        crate::provision::provision(self)
    }
}
