//! Throwaway PostgreSQL clusters for tests.
//!
//! pgtide is tested against real PostgreSQL servers, never a mock. This crate starts them: each
//! test builds a [`Cluster`] with [`ClusterBuilder`], gets its own data directory, port and
//! settings, can stop, restart or SIGKILL the server to inject faults, and loses everything when
//! the value is dropped — on success, on failure and while unwinding from a panic. The API is
//! synchronous (`std::process`), so it works the same from plain and `#[tokio::test]` tests.
//!
//! ```no_run
//! use pgtide_harness::{Auth, Cluster};
//! let pg = Cluster::builder().auth(Auth::ScramSha256).user("app", "secret").database("app").start()?;
//! let dsn = pg.conn_string("app", "secret", "app"); // for tokio-postgres, psql, pgbench
//! pg.kill9()?;
//! pg.start()?;
//! # Ok::<(), pgtide_harness::HarnessError>(())
//! ```
//!
//! # Layout
//! - `builder.rs`: `ClusterBuilder` and `Auth`, what a test asks for.
//! - `provision.rs`: builder → running cluster (template copy, config, start, users).
//! - `cluster.rs`: the running `Cluster`: addresses, psql, stop/start/kill9, `Drop`.
//! - `template.rs`: one initdb per machine, copied for every cluster.
//! - `conf.rs`, `tls.rs`: `pgtide.conf`, `pg_hba.conf`, the self-signed certificate.
//! - `paths.rs`: where clusters live; the sweep of ones left by killed test processes.
//! - `pgbin.rs`, `process.rs`: running PostgreSQL binaries (as `postgres` when root), PIDs.
//! - `port.rs`, `connstr.rs`, `psql.rs`: free ports, connection strings, psql as a client.
//! - `leaks.rs`: the check every [`Pgtide`] runs when it stops: no server left busy after its
//!   client is gone.
//!
//! # Environment
//! - `PGTIDE_PG_BIN_DIR`: PostgreSQL binaries (default `/usr/lib/postgresql/15/bin`).
//! - `PGTIDE_TEST_TMPDIR`: where clusters and the cached template go (default the system temp
//!   dir). Must be traversable by the `postgres` user when tests run as root.
//!
//! Linux only: process liveness is read from `/proc`.

mod builder;
mod cluster;
mod conf;
mod connstr;
mod error;
mod leaks;
mod paths;
mod pgbin;
mod pgtide;
mod port;
mod process;
mod provision;
mod psql;
mod template;
mod tls;

pub use builder::{Auth, ClusterBuilder};
pub use cluster::{Cluster, HOST};
pub use connstr::{conn_string, conninfo_value, url};
pub use error::{HarnessError, Result};
pub use paths::{base_dir, sweep_stale_clusters};
pub use pgbin::{
    describe, output_of, pg_bin, pg_bin_dir, pg_command, run, run_as_pg_user, running_as_root,
    DEFAULT_PG_BIN_DIR, PG_OS_USER,
};
pub use pgtide::{Pgtide, PgtideBuilder};
pub use port::free_port;
pub use process::pid_alive;
pub use psql::{psql, quote_ident, quote_literal};
