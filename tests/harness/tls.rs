//! A self-signed server certificate for TLS clusters, made with the `openssl` CLI.
//!
//! The certificate is an end-entity certificate (`CA:FALSE`, `serverAuth`) with subject
//! alternative names `IP:127.0.0.1` and `DNS:localhost`, signed by its own P-256 key. Used as
//! its own trust root it passes libpq's `sslmode=verify-full` and rustls/webpki verification
//! (which rejects a CA certificate presented as a server's, the `openssl req -x509` default).
//! A P-256 key takes milliseconds to generate, RSA far longer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::conf::{TLS_CERT_FILE, TLS_KEY_FILE};
use crate::error::{HarnessError, Result};
use crate::pgbin::{give_to_pg_user, run};

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
x509_extensions = leaf
prompt = no
[dn]
CN = localhost
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
";

/// Writes `server.crt` and `server.key` into `data_dir`, owned by the server's OS user with the
/// key at mode 0600 (PostgreSQL refuses a key others can read), and returns (cert, key).
/// `scratch_dir` receives the openssl config file.
pub(crate) fn write_self_signed(data_dir: &Path, scratch_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let config = scratch_dir.join("openssl-req.cnf");
    std::fs::write(&config, OPENSSL_CONFIG)
        .map_err(|e| HarnessError::io(format!("writing {}", config.display()), e))?;
    let cert = data_dir.join(TLS_CERT_FILE);
    let key = data_dir.join(TLS_KEY_FILE);
    let mut openssl = Command::new("openssl");
    openssl
        .args(["req", "-x509", "-config"])
        .arg(&config)
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "30", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    run(&mut openssl)?;
    set_mode(&key, 0o600)?;
    give_to_pg_user(&key, false)?;
    give_to_pg_user(&cert, false)?;
    Ok((cert, key))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| HarnessError::io(format!("chmod {mode:o} {}", path.display()), e))
}
