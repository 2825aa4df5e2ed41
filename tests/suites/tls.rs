//! TLS on both sides of pgtide: clients (psql with sslmode) and servers (verify-full with SNI,
//! against a cluster that refuses plain connections).

use std::process::Output;

use pgtide_harness::{Auth, Cluster, Pgtide, PgtideBuilder};

mod common;
use common::*;

fn tls_cluster(require: bool) -> Cluster {
    app_cluster_builder(Auth::ScramSha256)
        .tls(true)
        .require_tls(require)
        .start()
        .expect("cluster starts")
}

fn psql(p: &Pgtide, sslmode: &str, extra: &[(&str, &str)], sql: &str) -> Output {
    let mut cmd = psql_command(p);
    cmd.args(["-c", sql])
        .env("PGSSLMODE", sslmode)
        .env("PGCONNECT_TIMEOUT", "10");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("psql runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn tls_on_both_sides_with_verify_full_to_the_server() {
    let c = tls_cluster(true);
    let cert = c.tls_cert_path().unwrap().display().to_string();
    let key = c.tls_key_path().unwrap().display().to_string();
    let p = PgtideBuilder::new(&c, "app")
        .set("databases.app.password", "secret")
        .set("databases.app.tls.mode", "verify-full")
        .set("databases.app.tls.ca_file", &format!("{cert:?}"))
        .set("pgtide.tls.mode", "require")
        .set("pgtide.tls.cert_file", &format!("{cert:?}"))
        .set("pgtide.tls.key_file", &format!("{key:?}"))
        .start()
        .expect("pgtide starts");

    // Client side: TLS accepted, and verified against the same self-signed certificate.
    let ok = psql(&p, "require", &[], "SELECT 'tls-client-ok'");
    assert!(
        ok.status.success() && text(&ok).contains("tls-client-ok"),
        "{}",
        text(&ok)
    );
    let verified = psql(
        &p,
        "verify-full",
        &[("PGSSLROOTCERT", &cert)],
        "SELECT 'verified'",
    );
    assert!(text(&verified).contains("verified"), "{}", text(&verified));

    // Server side: the server (which refuses plain connections) sees TLS from pgtide.
    let ssl = psql(
        &p,
        "require",
        &[],
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(
        String::from_utf8_lossy(&ssl.stdout).trim(),
        "t",
        "{}",
        text(&ssl)
    );

    // Plain clients are refused when pgtide requires TLS.
    let plain = psql(&p, "disable", &[], "SELECT 1");
    assert!(!plain.status.success());
    assert!(
        text(&plain).contains("pgtide requires SSL"),
        "{}",
        text(&plain)
    );
}

#[test]
fn server_tls_failures_are_classified() {
    // A server without TLS while pgtide requires it.
    let plain = app_cluster(Auth::ScramSha256);
    let p = PgtideBuilder::new(&plain, "app")
        .set("databases.app.password", "secret")
        .set("databases.app.tls.mode", "require")
        .start()
        .unwrap();
    let out = psql(&p, "disable", &[], "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not support TLS"),
        "{}",
        text(&out)
    );

    // `prefer` falls back to plain text.
    let p = PgtideBuilder::new(&plain, "app")
        .set("databases.app.password", "secret")
        .set("databases.app.tls.mode", "prefer")
        .start()
        .unwrap();
    let out = psql(&p, "disable", &[], "SELECT 'fell-back'");
    assert!(text(&out).contains("fell-back"), "{}", text(&out));

    // verify-full with the wrong SNI name fails the certificate check.
    let c = tls_cluster(false);
    let cert = c.tls_cert_path().unwrap().display().to_string();
    let p = PgtideBuilder::new(&c, "app")
        .set("databases.app.password", "secret")
        .set("databases.app.tls.mode", "verify-full")
        .set("databases.app.tls.ca_file", &format!("{cert:?}"))
        .set("databases.app.tls.sni", "wrong.example.com")
        .start()
        .unwrap();
    let out = psql(&p, "disable", &[], "SELECT 1");
    assert!(!out.status.success());
    assert!(text(&out).contains("TLS to server"), "{}", text(&out));
}
