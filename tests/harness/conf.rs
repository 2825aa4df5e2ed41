//! The two configuration files the harness writes into each data directory: `pgtide.conf`
//! (included last by `postgresql.conf`, see [`crate::template`]) and `pg_hba.conf`.

use std::fmt::Write;
use std::path::Path;

use crate::builder::ClusterBuilder;

/// File names of the certificate and key inside the data directory (see [`crate::tls`]).
pub(crate) const TLS_CERT_FILE: &str = "server.crt";
pub(crate) const TLS_KEY_FILE: &str = "server.key";

/// Quotes a value for `postgresql.conf`. Every setting accepts a quoted value, so all are quoted.
fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The per-cluster settings: where to listen, how to store passwords, TLS, then the test's own
/// settings in the order given (later lines win).
pub(crate) fn render_settings(spec: &ClusterBuilder, port: u16, socket_dir: &Path) -> String {
    let mut out = String::from("# Written by pgtide_harness before each start; do not edit.\n");
    let mut set = |name: &str, value: &str| {
        let _ = writeln!(out, "{name} = {}", conf_value(value));
    };
    set("listen_addresses", "127.0.0.1");
    set("port", &port.to_string());
    set("unix_socket_directories", &socket_dir.to_string_lossy());
    set("password_encryption", spec.auth.password_encryption());
    if let Some(n) = spec.max_connections {
        set("max_connections", &n.to_string());
    }
    if spec.tls {
        set("ssl", "on");
        set("ssl_cert_file", TLS_CERT_FILE);
        set("ssl_key_file", TLS_KEY_FILE);
    }
    for (name, value) in &spec.settings {
        set(name, value);
    }
    out
}

/// `pg_hba.conf`: the test's own lines first, then the superuser trusted over the socket and
/// from 127.0.0.1 (for the harness's admin work), then everyone else with the chosen method.
pub(crate) fn render_hba(spec: &ClusterBuilder) -> String {
    let mut out =
        String::from("# Written by pgtide_harness.\n# TYPE DATABASE USER ADDRESS METHOD\n");
    for line in &spec.hba_lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("local all all trust\n");
    out.push_str("host all postgres 127.0.0.1/32 trust\n");
    let kind = if spec.tls_required { "hostssl" } else { "host" };
    let _ = writeln!(
        out,
        "{kind} all all 127.0.0.1/32 {}",
        spec.auth.hba_method()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Auth;

    #[test]
    fn values_are_quoted_and_later_settings_win() {
        let spec = ClusterBuilder::new()
            .auth(Auth::Md5)
            .setting("application_name", "it's")
            .setting("port", "1");
        let text = render_settings(&spec, 5555, Path::new("/tmp/x/s"));
        assert!(text.contains("password_encryption = 'md5'\n"));
        assert!(text.contains("application_name = 'it''s'\n"));
        let port_lines: Vec<_> = text.lines().filter(|l| l.starts_with("port")).collect();
        assert_eq!(port_lines, ["port = '5555'", "port = '1'"]);
        assert!(!text.contains("ssl"));
    }

    #[test]
    fn hba_orders_custom_then_superuser_then_everyone() {
        let spec = ClusterBuilder::new()
            .auth(Auth::ScramSha256)
            .require_tls(true)
            .hba_line("host all blocked 127.0.0.1/32 reject");
        let text = render_hba(&spec);
        let lines: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "host all blocked 127.0.0.1/32 reject",
                "local all all trust",
                "host all postgres 127.0.0.1/32 trust",
                "hostssl all all 127.0.0.1/32 scram-sha-256",
            ]
        );
    }
}
