//! TLS material: the acceptor for clients (`[pgtide.tls]`) and connectors for servers
//! (`[databases.NAME.tls]`, with SNI — Neon routes connections by it).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use pgtide_config::{ClientTls, ClientTlsMode, Config, ServerTls, ServerTlsMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file (certificate, key, CA bundle).
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The SNI / host is not a valid server name.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn file_err(what: &'static str, path: &Path, reason: impl ToString) -> TlsSetupError {
    TlsSetupError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The client-side acceptor, or `None` when client TLS is disabled.
pub fn client_acceptor(cfg: &ClientTls) -> Result<Option<TlsAcceptor>, TlsSetupError> {
    if cfg.mode == ClientTlsMode::Disable {
        return Ok(None);
    }
    let (Some(cert_path), Some(key_path)) = (&cfg.cert_file, &cfg.key_file) else {
        return Err(TlsSetupError::File {
            what: "certificate/key",
            path: String::new(),
            reason: "cert_file and key_file are required".into(),
        });
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| file_err("certificate", cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("certificate", cert_path, e))?;
    if certs.is_empty() {
        return Err(file_err("certificate", cert_path, "no certificate in file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_err("key", key_path, e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// How pgtide opens TLS to one database's servers.
#[derive(Clone)]
pub struct ServerTlsSetup {
    /// `prefer` falls back to plain text when the server declines; the others fail.
    pub mode: ServerTlsMode,
    /// The connector with the verification policy of `mode`.
    pub connector: TlsConnector,
    /// SNI and (for verify-full) the name checked against the certificate.
    pub server_name: ServerName<'static>,
}

impl fmt::Debug for ServerTlsSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsSetup")
            .field("mode", &self.mode)
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Server TLS setups by database name (databases with TLS disabled are absent).
pub type ServerTlsSetups = HashMap<String, ServerTlsSetup>;

/// Builds every database's server TLS setup once per config load (start-up, reload): files are
/// read and checked then, not at each pool creation, and a bad one rejects the whole config.
pub fn server_setups(config: &Config) -> Result<ServerTlsSetups, TlsSetupError> {
    let mut setups = HashMap::new();
    for (name, db) in &config.databases {
        if let Some(setup) = server_setup(&db.tls, &db.host)? {
            setups.insert(name.clone(), setup);
        }
    }
    Ok(setups)
}

/// The server-side TLS setup for a database, or `None` when its TLS is disabled.
pub fn server_setup(cfg: &ServerTls, host: &str) -> Result<Option<ServerTlsSetup>, TlsSetupError> {
    if cfg.mode == ServerTlsMode::Disable {
        return Ok(None);
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let config = if cfg.mode == ServerTlsMode::VerifyFull {
        let path = cfg.ca_file.as_ref().ok_or_else(|| TlsSetupError::File {
            what: "CA bundle",
            path: String::new(),
            reason: "ca_file is required for verify-full".into(),
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| file_err("CA bundle", path, e))?
        {
            roots
                .add(cert.map_err(|e| file_err("CA bundle", path, e))?)
                .map_err(|e| file_err("CA bundle", path, e))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        // libpq's `require`/`prefer`: encrypted, certificate not verified.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth()
    };
    let name = cfg.sni.clone().unwrap_or_else(|| host.to_owned());
    let server_name =
        ServerName::try_from(name.clone()).map_err(|_| TlsSetupError::ServerName(name))?;
    Ok(Some(ServerTlsSetup {
        mode: cfg.mode,
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    }))
}

/// Verifies signatures (the handshake stays sound) but not the certificate's chain or name,
/// as libpq's `sslmode=require` does.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
