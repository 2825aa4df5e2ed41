//! Turning a [`ClusterBuilder`] into a running [`Cluster`]: copy the template, write the
//! configuration, start on a free port, create users and databases.
//!
//! The `Cluster` value exists from the moment its directory does, so an error at any later step
//! drops it, and its `Drop` stops whatever was started and deletes the directory.

use std::path::Path;

use crate::builder::ClusterBuilder;
use crate::cluster::Cluster;
use crate::conf::{render_hba, render_settings};
use crate::error::{HarnessError, Result};
use crate::paths::{create_owned_dir, sweep_once};
use crate::pgbin::give_to_pg_user;
use crate::port::free_port;
use crate::psql::{quote_ident, quote_literal};
use crate::template::{copy_template_to, template_data_dir, HARNESS_CONF};
use crate::tls;

/// How many fresh ports to try when another process grabs ours between [`free_port`] and the
/// server's bind.
const PORT_ATTEMPTS: usize = 5;

pub(crate) fn provision(spec: ClusterBuilder) -> Result<Cluster> {
    sweep_once();
    template_data_dir()?; // fail before creating anything if PostgreSQL is unusable

    let root = create_owned_dir("")?;
    let mut cluster = Cluster {
        data_dir: root.join("data"),
        socket_dir: root.join("s"),
        log_path: root.join("postgres.log"),
        root,
        port: 0,
        tls: None,
        spec,
    };
    give_to_pg_user(&cluster.root, false)?;
    copy_template_to(&cluster.data_dir)?;
    std::fs::create_dir(&cluster.socket_dir)
        .map_err(|e| HarnessError::io(format!("creating {}", cluster.socket_dir.display()), e))?;
    give_to_pg_user(&cluster.socket_dir, false)?;
    if cluster.spec.tls {
        cluster.tls = Some(tls::write_self_signed(&cluster.data_dir, &cluster.root)?);
    }
    write_file(
        &cluster.data_dir.join("pg_hba.conf"),
        &render_hba(&cluster.spec),
    )?;

    start_on_free_port(&mut cluster)?;
    create_users_and_databases(&cluster)?;
    Ok(cluster)
}

fn start_on_free_port(cluster: &mut Cluster) -> Result<()> {
    let mut attempt = 1;
    loop {
        cluster.port = free_port();
        let settings = render_settings(&cluster.spec, cluster.port, &cluster.socket_dir);
        write_file(&cluster.data_dir.join(HARNESS_CONF), &settings)?;
        match cluster.start() {
            Err(HarnessError::Start { log_tail, .. })
                if attempt < PORT_ATTEMPTS && log_tail.contains("Address already in use") =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn create_users_and_databases(cluster: &Cluster) -> Result<()> {
    let spec = &cluster.spec;
    let default_owner = spec.users.first().map_or("postgres", |u| u.name.as_str());
    let mut statements: Vec<String> = spec
        .users
        .iter()
        .map(|u| {
            format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_ident(&u.name),
                quote_literal(&u.password)
            )
        })
        .collect();
    statements.extend(spec.databases.iter().map(|db| {
        format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(&db.name),
            quote_ident(db.owner.as_deref().unwrap_or(default_owner))
        )
    }));
    if statements.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    cluster.superuser_psql_in("postgres", &refs)?;
    Ok(())
}

/// Writes a configuration file the server must read, owned by the server's OS user.
fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents)
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
    give_to_pg_user(path, false)
}
