//! `pgtide [--config FILE]`: the daemon. SIGHUP reloads the config live; SIGTERM/SIGINT stop
//! accepting, let transactions finish, and exit.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pgtide_admin_api::Tokens;

use pgtide_config::Config;
use pgtide_pool_core::{Proxy, ProxyHandle};
use tokio::signal::unix::{signal, SignalKind};

use crate::admin;
use crate::check_config::EXIT_INVALID;
use crate::cli::ConfigArgs;
use crate::logging;

/// How long shutdown waits for clients inside a transaction to finish it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Loads the config and runs the pooler until a shutdown signal.
pub fn run(args: &ConfigArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgtide: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let log_level = logging::init(&config.log);
    let runtime = match pgtide_pool_core::runtime::build(config.pgtide.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgtide: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        reload_from: Some(args.clone()),
        ..Options::default()
    };
    runtime.block_on(serve(config, log_level, options))
}

/// Where pgtide listens, once bound.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Client listeners.
    pub listen: Vec<SocketAddr>,
    /// The admin API.
    pub admin: SocketAddr,
}

/// Run once everything is bound, before serving.
pub type OnReady = Box<dyn FnOnce(&Bound) + Send>;

/// How [`serve`] runs besides its config.
#[derive(Default)]
pub struct Options {
    /// SIGHUP (and `POST /v1/reload`) reload from these flags.
    pub reload_from: Option<ConfigArgs>,
    /// Admin tokens to use instead of `admin.tokens_file` (the demo's generated ones).
    pub tokens: Option<Tokens>,
    /// Called once everything is bound, before serving (the demo prints its banner).
    pub on_ready: Option<OnReady>,
    /// A busy `admin.listen` falls back to a free port (the demo: a second demo or a
    /// benchmark next to a running pgtide still starts).
    pub admin_any_port: bool,
}

/// Binds and serves `config` with its admin API; `log.level` follows reloads through
/// `log_level`.
pub async fn serve(config: Config, log_level: logging::LogLevel, options: Options) -> ExitCode {
    let prometheus = admin::install_metrics();
    let proxy = match Proxy::bind(config.clone()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("pgtide: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = proxy.handle();
    let admin = match admin::start(
        &config,
        &handle,
        options.tokens,
        prometheus,
        DRAIN_TIMEOUT,
        options.admin_any_port,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("pgtide: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = Bound {
        listen: proxy.local_addrs(),
        admin: admin.addr,
    };
    let addrs: Vec<String> = bound.listen.iter().map(ToString::to_string).collect();
    tracing::info!(listen = %addrs.join(", "), admin = %bound.admin, databases = config.databases.len(), version = env!("CARGO_PKG_VERSION"), "pgtide ready");
    handle.on_reload(Arc::new(move |c: &Config| log_level.set(&c.log.level)));
    if let Some(args) = options.reload_from {
        handle.set_config_source(Arc::new(move || {
            args.load().map_err(|e| vec![e.to_string()])
        }));
        tokio::spawn(reload_on_sighup(handle.clone()));
    }
    if let Some(on_ready) = options.on_ready {
        on_ready(&bound);
    }
    proxy.serve(shutdown_signal(), DRAIN_TIMEOUT).await;
    admin.stopped().await;
    tracing::info!("pgtide stopped");
    ExitCode::SUCCESS
}

/// Reloads on every SIGHUP through the proxy's one reload path, until shutdown.
async fn reload_on_sighup(handle: ProxyHandle) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install SIGHUP handler; reload disabled");
        return;
    };
    let mut stopping = handle.shutdown_signal();
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return },
            _ = pgtide_pool_core::lifecycle::stopping(&mut stopping) => return,
        }
        match handle.reload_from_source() {
            Ok(report) => report.log(),
            Err(e) => {
                tracing::error!(error = %e, "reload rejected: the running config is unchanged")
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
