//! Opening a server connection: resolve, TCP connect, startup, authenticate, read the session's
//! parameters — all bounded by `connect_timeout`, every failure classified.

use std::io;
use std::time::Duration;

use crate::clock::Instant;

use bytes::BytesMut;
use pgtide_config::Secret;
use pgtide_protocol::frame::MAX_AUTH_MESSAGE_LEN;
use pgtide_protocol::scram::SCRAM_SHA_256;
use pgtide_protocol::startup::CancelKey;
use pgtide_protocol::{
    backend, encode, md5, Authentication, BackendMessage, ScramClient, ScramKeys,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{lookup_host, TcpStream};

use std::sync::Arc;

use super::{ParamSet, ServerConn, StartupSettings};
use crate::error::ServerError;
use crate::io::{read_frame, ReadFrameError};
use crate::stream::Stream;
use crate::sync::lock;
use crate::tls::ServerTlsSetup;

/// Everything needed to open a connection for one pool.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name on the server.
    pub dbname: String,
    /// Server user.
    pub user: String,
    /// Password, when the server asks for one.
    pub password: Option<Secret>,
    /// Extra startup parameters (GUCs such as `statement_timeout`, `application_name`).
    pub startup_params: Vec<(String, String)>,
    /// Bound on the whole connect.
    pub connect_timeout: Duration,
    /// TLS to the server (with SNI), or `None` for plain TCP.
    pub tls: Option<ServerTlsSetup>,
    /// `max_lifetime` (None = forever); each connection gets up to 10% less, at random, so a
    /// pool opened at once does not reconnect at once.
    pub max_lifetime: Option<Duration>,
    /// The circuit breaker of `host:port`, shared by every pool that connects there.
    pub breaker: std::sync::Arc<crate::breaker::Breaker>,
    /// SCRAM keys derived from `password` by an earlier connect, reused while the server's salt
    /// and iteration count stay the same: deriving them (PBKDF2, about 1 ms) would otherwise
    /// stall the runtime thread at every connect. Tied to `password`: a target is never given
    /// another password (a reload builds a new target, with an empty cache), and a refused
    /// login clears it.
    pub scram_keys: std::sync::Arc<std::sync::Mutex<Option<ScramKeys>>>,
}

impl ServerTarget {
    /// `host:port`, for messages.
    pub fn display_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Opens and authenticates a server connection within `target.connect_timeout`, with a
/// client's startup settings in its startup packet when `startup` is given (after the pool's
/// own, so the client's win as they would on a direct connection).
pub async fn connect(
    target: &ServerTarget,
    startup: Option<&Arc<StartupSettings>>,
) -> Result<ServerConn, ServerError> {
    let connect = connect_unbounded(target, startup);
    match tokio::time::timeout(target.connect_timeout, connect).await {
        Ok(result) => result,
        Err(_) => Err(ServerError::ConnectTimeout {
            target: target.display_addr(),
            timeout: target.connect_timeout,
        }),
    }
}

async fn connect_unbounded(
    t: &ServerTarget,
    startup: Option<&Arc<StartupSettings>>,
) -> Result<ServerConn, ServerError> {
    let addrs: Vec<_> = lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|source| ServerError::Dns {
            host: t.host.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ServerError::Dns {
            host: t.host.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        });
    }
    let mut last_error = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some((s, addr));
                break;
            }
            Err(source) => last_error = Some(ServerError::Connect { addr, source }),
        }
    }
    let Some((tcp, addr)) = stream else {
        return Err(last_error.expect("at least one address was tried"));
    };
    let _ = tcp.set_nodelay(true);
    let lost = |source: io::Error| ServerError::Lost { addr, source };
    let mut stream = match &t.tls {
        None => Stream::Plain(tcp),
        Some(tls) => start_tls(tcp, addr, tls).await?,
    };
    let read_err = |e: ReadFrameError| match e {
        ReadFrameError::Io(source) => ServerError::Lost { addr, source },
        ReadFrameError::Protocol(source) => ServerError::Protocol { addr, source },
    };

    let mut out = BytesMut::with_capacity(256);
    let mut params: Vec<(&str, &str)> = vec![("user", &t.user), ("database", &t.dbname)];
    params.extend(
        t.startup_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    params.extend(startup.into_iter().flat_map(|s| s.iter()));
    encode::startup_message(&mut out, &params);
    stream.write_all(&out).await.map_err(lost)?;

    let mut inbuf = BytesMut::with_capacity(1024);
    let mut scram: Option<ScramClient> = None;
    let mut server_params = ParamSet::new();
    let mut cancel_key = CancelKey {
        process_id: 0,
        secret_key: 0,
    };
    let password = || {
        t.password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .ok_or_else(|| ServerError::NoPassword {
                addr,
                user: t.user.clone(),
            })
    };
    loop {
        let frame = read_frame(&mut stream, &mut inbuf, MAX_AUTH_MESSAGE_LEN.max(64 * 1024))
            .await
            .map_err(read_err)?;
        let (tag, body) = (frame[0], &frame[5..]);
        let message =
            backend::decode(tag, body).map_err(|source| ServerError::Protocol { addr, source })?;
        out.clear();
        match message {
            BackendMessage::Authentication(auth) => match auth {
                Authentication::Ok => continue,
                Authentication::CleartextPassword => {
                    encode::password_message(&mut out, &password()?);
                }
                Authentication::Md5Password { salt } => {
                    let response = md5::md5_response(&t.user, &password()?, salt);
                    encode::password_message(&mut out, &response);
                }
                Authentication::Sasl { mechanisms } => {
                    if !mechanisms.contains(&SCRAM_SHA_256) {
                        return Err(ServerError::UnsupportedAuth {
                            addr,
                            method: format!("SASL {}", mechanisms.join(",")),
                        });
                    }
                    let kept = lock(&t.scram_keys).clone();
                    let client = ScramClient::new(password()?).with_keys(kept);
                    encode::sasl_initial_response(&mut out, SCRAM_SHA_256, &client.client_first());
                    scram = Some(client);
                }
                Authentication::SaslContinue { data } => {
                    // Without kept keys this derives them (PBKDF2, about 1 ms at 4096
                    // iterations), on this thread: once per pool target. Not on the blocking
                    // pool: a second thread in the process turns every later send and recv in
                    // glibc into its multi-threaded, cancellable form (about 300 more
                    // instructions per transaction, measured with benches/instructions.sh).
                    let client = scram.as_mut().ok_or_else(|| unexpected(addr))?;
                    let reply = client
                        .handle_server_first(data)
                        .map_err(|source| ServerError::Protocol { addr, source })?;
                    encode::sasl_response(&mut out, &reply);
                }
                Authentication::SaslFinal { data } => {
                    let client = scram.as_mut().ok_or_else(|| unexpected(addr))?;
                    client
                        .verify_server_final(data)
                        .map_err(|source| ServerError::Protocol { addr, source })?;
                    if client.derived_keys() {
                        // Kept only once the server proved it knows the same secret.
                        *lock(&t.scram_keys) = client.keys().cloned();
                    }
                    continue;
                }
                Authentication::Unsupported { code } => {
                    return Err(ServerError::UnsupportedAuth {
                        addr,
                        method: format!("authentication request code {code}"),
                    })
                }
            },
            BackendMessage::ParameterStatus { name, value } => {
                server_params.set(name, value);
                continue;
            }
            BackendMessage::BackendKeyData(key) => {
                cancel_key = key;
                continue;
            }
            BackendMessage::ReadyForQuery(_) => break,
            BackendMessage::ErrorResponse(fields) => {
                if scram.is_some() {
                    // Refused during or after SCRAM: keep no keys that might have led here.
                    *lock(&t.scram_keys) = None;
                }
                return Err(ServerError::Refused {
                    addr,
                    fields: Box::new(fields),
                });
            }
            _ => continue,
        }
        stream.write_all(&out).await.map_err(lost)?;
    }
    if !inbuf.is_empty() {
        return Err(unexpected(addr));
    }
    // Settings the server does not report are recorded as sent, so a client's are not SET
    // again on a server that already has them.
    let sent = t
        .startup_params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(startup.into_iter().flat_map(|s| s.iter()));
    let reported = server_params.clone();
    for (name, value) in sent {
        if reported.get(name).is_none() {
            server_params.set(name, value);
        }
    }
    let now = Instant::now();
    Ok(ServerConn {
        id: ServerConn::next_id(),
        stream,
        addr,
        cancel_key,
        params: server_params,
        created: now,
        idle_since: now,
        // A lifetime too long to represent means never retire (no overflow panic).
        retire_at: t.max_lifetime.and_then(|l| now.checked_add(jitter(l))),
        startup: startup.cloned(),
        statements: Default::default(),
        generation: 0,
        buffers: Default::default(),
    })
}

/// SSLRequest, then the handshake when the server answers 'S'.
async fn start_tls(
    mut tcp: TcpStream,
    addr: std::net::SocketAddr,
    tls: &ServerTlsSetup,
) -> Result<Stream, ServerError> {
    let mut out = BytesMut::with_capacity(8);
    encode::ssl_request(&mut out);
    tcp.write_all(&out)
        .await
        .map_err(|source| ServerError::Lost { addr, source })?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(|source| ServerError::Lost { addr, source })?;
    match answer {
        b'S' => {
            let stream = tls
                .connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|e| ServerError::Tls {
                    addr,
                    reason: e.to_string(),
                })?;
            Ok(Stream::Connected(Box::new(stream)))
        }
        b'N' if tls.mode == pgtide_config::ServerTlsMode::Prefer => Ok(Stream::Plain(tcp)),
        b'N' => Err(ServerError::Tls {
            addr,
            reason: "the server does not support TLS (it answered SSLRequest with 'N')".into(),
        }),
        other => Err(ServerError::Tls {
            addr,
            reason: format!("unexpected answer {other:#04x} to SSLRequest"),
        }),
    }
}

fn unexpected(addr: std::net::SocketAddr) -> ServerError {
    ServerError::Protocol {
        addr,
        source: pgtide_protocol::ProtocolError::Malformed {
            message: "authentication",
            reason: "message out of order",
        },
    }
}

/// Up to 10% off, at random.
fn jitter(lifetime: Duration) -> Duration {
    lifetime.mul_f64(1.0 - rand::random::<f64>() * 0.1)
}
