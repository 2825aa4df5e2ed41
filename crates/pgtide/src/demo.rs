//! `pgtide demo`: a throwaway PostgreSQL 15 cluster with pgtide in front, for trying pgtide
//! with nothing configured. It reuses the test harness's cluster launcher (initdb/pg_ctl, run as
//! the `postgres` OS user when started as root), and removes the cluster on exit.

use std::process::ExitCode;

use pgtide_admin_api::Tokens;
use pgtide_config::{Loader, Role};
use pgtide_harness::{Auth, Cluster};

use crate::check_config::EXIT_INVALID;
use crate::cli::{apply_sets, ConfigArgs};
use crate::daemon;
use crate::logging;

const DEMO_USER: &str = "demo";
const DEMO_PASSWORD: &str = "demo";
const DEMO_DB: &str = "demo";

/// Starts the cluster and pgtide; runs until Ctrl-C; cleans up.
pub fn run(listen: &str, args: &ConfigArgs) -> ExitCode {
    eprintln!("pgtide demo: starting a throwaway PostgreSQL 15 cluster...");
    let cluster = match Cluster::builder()
        .auth(Auth::ScramSha256)
        .user(DEMO_USER, DEMO_PASSWORD)
        .database_owned_by(DEMO_DB, DEMO_USER)
        .start()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgtide demo: cannot start PostgreSQL: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Clients log in without a password (demo only); pgtide logs in to PostgreSQL with SCRAM.
    let loader = Loader::new()
        .set("pgtide.listen", listen.to_owned())
        .set("pgtide.auth_type", "trust")
        .set("databases.demo.host", "127.0.0.1")
        .set("databases.demo.port", cluster.port() as i64)
        .set("databases.demo.password", DEMO_PASSWORD)
        .set("pool.max_size", 10i64);
    let loader = match apply_sets(loader, &args.set) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pgtide demo: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let config = match loader.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgtide demo: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let log_level = logging::init(&config.log);
    let viewer = random_token();
    let operator = random_token();
    let tokens = Tokens::none()
        .with("demo-viewer", Role::Viewer, &viewer)
        .with("demo-operator", Role::Operator, &operator);
    let direct = cluster.url(DEMO_USER, DEMO_PASSWORD, DEMO_DB);
    let on_ready = move |bound: &daemon::Bound| {
        let listen = bound
            .listen
            .first()
            .map_or_else(String::new, ToString::to_string);
        let admin = bound.admin;
        println!();
        println!("  PostgreSQL (direct):  {direct}");
        println!("  pgtide:               psql \"postgresql://{DEMO_USER}@{listen}/{DEMO_DB}\"");
        println!(
            "  pgbench:              pgbench -h {} -p {} -U {DEMO_USER} {DEMO_DB}",
            host_of(&listen),
            port_of(&listen)
        );
        println!("  admin API:            http://{admin}/v1/pools");
        println!("  viewer token:         {viewer}");
        println!("  operator token:       {operator}");
        println!("  try:                  curl -H \"Authorization: Bearer {viewer}\" http://{admin}/v1/pools");
        println!("  metrics:              curl http://{admin}/metrics");
        println!("  Ctrl-C stops pgtide and removes the cluster.");
        println!();
    };
    let runtime = match pgtide_pool_core::runtime::build(config.pgtide.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgtide demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = daemon::Options {
        tokens: Some(tokens),
        on_ready: Some(Box::new(on_ready)),
        admin_any_port: true,
        ..daemon::Options::default()
    };
    let code = runtime.block_on(daemon::serve(config, log_level, options));
    drop(runtime);
    drop(cluster);
    eprintln!("pgtide demo: cluster removed");
    code
}

/// 32 hex digits from the OS's random source: a fresh admin token for each demo run.
fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn host_of(listen: &str) -> &str {
    listen.rsplit_once(':').map_or(listen, |(h, _)| h)
}

fn port_of(listen: &str) -> &str {
    listen.rsplit_once(':').map_or("6432", |(_, p)| p)
}
