//! pgtide itself, run in-process on its own runtime thread in front of a [`Cluster`].
//!
//! In-process (rather than spawning the binary) keeps tests fast and lets them reach into the
//! proxy's state (pool sizes, stats) through its [`ProxyHandle`]; the runtime on a dedicated
//! thread means tests may block on psql/pgbench subprocesses without starving the proxy.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use pgtide_config::{Config, Loader};
use pgtide_pool_core::{Proxy, ProxyHandle};
use tokio::sync::oneshot;

use crate::cluster::Cluster;
use crate::error::{HarnessError, Result};
use crate::leaks::LeakCheck;
use crate::paths::base_dir;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Builds the config of a test pgtide: database `app` (and any others added) pointing at a
/// cluster, listening on a free loopback port.
pub struct PgtideBuilder {
    loader: Loader,
    users: Vec<String>,
    /// The first cluster's socket directory and port, for the leak check at stop.
    cluster: (std::path::PathBuf, u16),
}

impl PgtideBuilder {
    /// Trust auth for clients, database `db` at `cluster`, pool settings at their defaults.
    pub fn new(cluster: &Cluster, db: &str) -> Self {
        let loader = Loader::new()
            .without_env()
            .set("pgtide.listen", "127.0.0.1:0")
            .set("pgtide.auth_type", "trust");
        Self {
            loader,
            users: Vec::new(),
            cluster: (cluster.socket_dir().to_owned(), cluster.port()),
        }
        .database(db, cluster)
    }

    /// Adds a database entry pointing at `cluster` (database name on the server = `db`).
    pub fn database(mut self, db: &str, cluster: &Cluster) -> Self {
        self.loader = self
            .loader
            .set(&format!("databases.{db}.host"), "127.0.0.1")
            .set(&format!("databases.{db}.port"), i64::from(cluster.port()));
        self
    }

    /// Any config key, as `--set` takes it: `.set("pool.max_size", "5")`.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.loader = self.loader.set_str(key, value);
        self
    }

    /// A user in the auth file with a plain password (also used to log in to the server).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push(format!(
            "[[users]]\nname = {name:?}\npassword = {password:?}\n"
        ));
        self
    }

    /// A raw `[[users]]` entry (for scram_secret / md5 entries).
    pub fn user_entry(mut self, toml: &str) -> Self {
        self.users.push(toml.to_owned());
        self
    }

    /// Loads the config and starts pgtide.
    pub fn start(self) -> Result<Pgtide> {
        let dir = base_dir().join(format!(
            "pgtide-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).map_err(|e| HarnessError::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        })?;
        let mut loader = self.loader;
        if !self.users.is_empty() {
            let path = dir.join("users.toml");
            fs::write(&path, self.users.join("\n")).map_err(|e| HarnessError::Io {
                context: format!("writing {}", path.display()),
                source: e,
            })?;
            loader = loader.set("pgtide.auth_file", path.display().to_string());
        }
        let config = loader
            .load()
            .map_err(|e| HarnessError::Pgtide(e.to_string()))?;
        let mut pgtide = Pgtide::start(config, Some(dir))?;
        let (socket_dir, pg_port) = self.cluster;
        pgtide.leak_check = Some(LeakCheck {
            port: pgtide.port(),
            socket_dir,
            pg_port,
        });
        Ok(pgtide)
    }
}

/// A running in-process pgtide; stopped (and its files removed) on drop.
pub struct Pgtide {
    addr: SocketAddr,
    handle: ProxyHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    dir: Option<PathBuf>,
    /// Run when pgtide stops, unless the test is already failing ([`Pgtide::check_no_leaks`]).
    leak_check: Option<LeakCheck>,
}

impl Pgtide {
    /// Starts pgtide with `config` (listen on port 0 to get a free one).
    pub fn start(config: Config, dir: Option<PathBuf>) -> Result<Pgtide> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pgtide-under-test".into())
            .spawn(move || {
                // The daemon's runtime, sized by `pgtide.workers` (default: one thread).
                let runtime =
                    pgtide_pool_core::runtime::build(config.pgtide.workers).expect("tokio runtime");
                runtime.block_on(async move {
                    let proxy = match Proxy::bind(config).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((proxy.local_addrs()[0], proxy.handle())));
                    proxy
                        .serve(
                            async {
                                let _ = stop_rx.await;
                            },
                            Duration::from_secs(5),
                        )
                        .await;
                });
            })
            .map_err(|e| HarnessError::Io {
                context: "spawning the pgtide thread".into(),
                source: e,
            })?;
        let (addr, handle) = ready_rx
            .recv()
            .map_err(|_| HarnessError::Pgtide("pgtide thread died".into()))?
            .map_err(HarnessError::Pgtide)?;
        Ok(Pgtide {
            addr,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
            dir,
            leak_check: None,
        })
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The proxy's handle (pools, stats, reload).
    pub fn handle(&self) -> &ProxyHandle {
        &self.handle
    }

    /// A libpq/tokio-postgres connection string through pgtide.
    pub fn conn_string(&self, user: &str, password: Option<&str>, db: &str) -> String {
        crate::connstr::conn_string("127.0.0.1", self.port(), user, password, db)
    }
}

impl Pgtide {
    /// Fails when a server is left busy after its client is gone (`leaks.rs`); waits a few
    /// seconds for pgtide to notice clients that just left. Runs by itself when a pgtide built
    /// with [`PgtideBuilder`] stops; call it to check at a point of a test.
    pub fn check_no_leaks(&self) -> std::result::Result<(), String> {
        match &self.leak_check {
            Some(check) => check.run(&self.handle),
            None => Ok(()),
        }
    }
}

impl Drop for Pgtide {
    fn drop(&mut self) {
        let leak = if std::thread::panicking() {
            Ok(())
        } else {
            self.check_no_leaks()
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(dir) = self.dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
        if let Err(finding) = leak {
            panic!("pgtide leak check: {finding}");
        }
    }
}
