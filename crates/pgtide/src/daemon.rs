//! `pgtide [--config FILE]`: the daemon. SIGHUP reloads the config live; SIGTERM/SIGINT stop
//! accepting, let transactions finish, and exit.

use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use pgtide_config::Config;
use pgtide_pool_core::{Proxy, ProxyHandle};
use tokio::signal::unix::{signal, SignalKind};

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
    runtime.block_on(serve(config, Some(args.clone()), log_level))
}

/// Binds and serves `config`; with `reload_from`, SIGHUP reloads from those flags (and
/// `log.level` follows through `log_level`).
pub async fn serve(
    config: Config,
    reload_from: Option<ConfigArgs>,
    log_level: logging::LogLevel,
) -> ExitCode {
    let proxy = match Proxy::bind(config.clone()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("pgtide: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addrs: Vec<String> = proxy
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(listen = %addrs.join(", "), databases = config.databases.len(), version = env!("CARGO_PKG_VERSION"), "pgtide ready");
    let handle = proxy.handle();
    handle.on_reload(Arc::new(move |c: &Config| log_level.set(&c.log.level)));
    if let Some(args) = reload_from {
        handle.set_config_source(Arc::new(move || {
            args.load().map_err(|e| vec![e.to_string()])
        }));
        tokio::spawn(reload_on_sighup(handle.clone()));
    }
    proxy.serve(shutdown_signal(), DRAIN_TIMEOUT).await;
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
