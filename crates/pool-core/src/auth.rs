//! Authenticating clients against the auth file.
//!
//! Secrets are prepared once at load: a plain password becomes a SCRAM secret up front, so a
//! login costs one SCRAM exchange, not a 4096-round PBKDF2 per connection (which would make
//! connection churn CPU-bound). Unknown users go through the same exchange against a throwaway
//! secret and fail with the same message as a wrong password, so user names cannot be probed.

use std::collections::HashMap;
use std::io;

use bytes::BytesMut;
use pgtide_config::{AuthFile, AuthType, Config, ConfigError, Secret};
use pgtide_protocol::frame::MAX_AUTH_MESSAGE_LEN;
use pgtide_protocol::scram::SCRAM_SHA_256;
use pgtide_protocol::{
    encode, frontend, md5, tag, ProtocolError, ScramSecret, ScramServer, SqlState,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::io::{read_frame, ReadFrameError};

#[derive(Debug)]
struct UserCreds {
    scram: Option<ScramSecret>,
    /// A stored `md5…` hash or the plain password: both verify md5 responses.
    md5: Option<String>,
    password: Option<Secret>,
}

/// Why a client was not let in.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// Wrong password or unknown user (deliberately the same message).
    #[error("password authentication failed for user \"{user}\"")]
    Failed {
        /// Who tried.
        user: String,
    },
    /// The user exists but has no secret usable with the configured method.
    #[error("user \"{user}\" cannot log in with {method}: {reason}")]
    Unusable {
        /// Who tried.
        user: String,
        /// The configured auth type.
        method: &'static str,
        /// What is missing.
        reason: &'static str,
    },
    /// The client sent something other than the expected password message.
    #[error("invalid authentication message: {0}")]
    Protocol(#[from] ProtocolError),
    /// The client went away mid-exchange.
    #[error("client disconnected during authentication: {0}")]
    Io(#[from] io::Error),
}

impl ClientAuthError {
    /// SQLSTATE for the client.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            ClientAuthError::Failed { .. } => SqlState::INVALID_PASSWORD,
            ClientAuthError::Unusable { .. } => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ClientAuthError::Protocol(e) => e.sqlstate(),
            ClientAuthError::Io(_) => SqlState::CONNECTION_FAILURE,
        }
    }
}

impl From<ReadFrameError> for ClientAuthError {
    fn from(e: ReadFrameError) -> Self {
        match e {
            ReadFrameError::Io(e) => ClientAuthError::Io(e),
            ReadFrameError::Protocol(e) => ClientAuthError::Protocol(e),
        }
    }
}

/// The users pgtide knows and how it checks them.
#[derive(Debug)]
pub struct Authenticator {
    auth_type: AuthType,
    users: HashMap<String, UserCreds>,
}

impl Authenticator {
    /// Loads the auth file named in `config` (if any) and prepares every user's secrets.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let file = match &config.pgtide.auth_file {
            Some(path) => AuthFile::load(path)?,
            None => AuthFile::default(),
        };
        Ok(Self::from_file(config.pgtide.auth_type, &file))
    }

    /// Prepares secrets from an already-loaded auth file.
    pub fn from_file(auth_type: AuthType, file: &AuthFile) -> Self {
        let users = file
            .users
            .iter()
            .map(|u| {
                let scram = u
                    .scram_secret
                    .as_ref()
                    .and_then(|s| ScramSecret::parse(s.expose()).ok())
                    .or_else(|| {
                        u.password
                            .as_ref()
                            .map(|p| ScramSecret::from_password(p.expose()))
                    });
                let md5 = u
                    .md5
                    .as_ref()
                    .or(u.password.as_ref())
                    .map(|s| s.expose().to_owned());
                let creds = UserCreds {
                    scram,
                    md5,
                    password: u.password.clone(),
                };
                (u.name.clone(), creds)
            })
            .collect();
        Self { auth_type, users }
    }

    /// The plain password of `user`, if the auth file has one: what pgtide uses to log in to
    /// the server as that user when the database entry sets none.
    pub fn password_for(&self, user: &str) -> Option<&Secret> {
        self.users.get(user).and_then(|u| u.password.as_ref())
    }

    /// Runs the configured exchange with the client. On success the caller sends AuthenticationOk.
    pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        inbuf: &mut BytesMut,
        user: &str,
    ) -> Result<(), ClientAuthError> {
        match self.auth_type {
            AuthType::Trust => Ok(()),
            AuthType::ScramSha256 => self.scram(stream, inbuf, user).await,
            AuthType::Md5 => self.md5(stream, inbuf, user).await,
        }
    }

    async fn scram<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        inbuf: &mut BytesMut,
        user: &str,
    ) -> Result<(), ClientAuthError> {
        let known = self.users.get(user).and_then(|u| u.scram.clone());
        let is_known = known.is_some();
        if !is_known && self.users.get(user).is_some_and(|u| u.md5.is_some()) {
            return Err(ClientAuthError::Unusable {
                user: user.to_owned(),
                method: "scram-sha-256",
                reason: "the auth file has only an md5 hash for this user; give it a password or scram_secret",
            });
        }
        let secret = known.unwrap_or_else(mock_secret);
        let mut server = ScramServer::with_random_nonce(secret);
        let mut out = BytesMut::with_capacity(256);
        encode::auth_sasl(&mut out, &[SCRAM_SHA_256]);
        stream.write_all(&out).await?;

        let first = read_password_frame(stream, inbuf).await?;
        let initial = frontend::parse_sasl_initial_response(&first[5..])?;
        if initial.mechanism != SCRAM_SHA_256 {
            return Err(ProtocolError::Scram {
                reason: format!("unsupported SASL mechanism {:?}", initial.mechanism),
            }
            .into());
        }
        let server_first = server.handle_client_first(initial.data)?;
        out.clear();
        encode::auth_sasl_continue(&mut out, &server_first);
        stream.write_all(&out).await?;

        let last = read_password_frame(stream, inbuf).await?;
        let server_final =
            match server.handle_client_final(frontend::parse_sasl_response(&last[5..])) {
                Ok(f) if is_known => f,
                Ok(_) => return Err(failed(user)),
                Err(e) if e.is_auth_failure() => return Err(failed(user)),
                Err(e) => return Err(e.into()),
            };
        out.clear();
        encode::auth_sasl_final(&mut out, &server_final);
        stream.write_all(&out).await?;
        Ok(())
    }

    async fn md5<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        inbuf: &mut BytesMut,
        user: &str,
    ) -> Result<(), ClientAuthError> {
        let salt: [u8; 4] = rand::random();
        let mut out = BytesMut::with_capacity(16);
        encode::auth_md5_password(&mut out, salt);
        stream.write_all(&out).await?;
        let frame = read_password_frame(stream, inbuf).await?;
        let response = frontend::parse_password(&frame[5..])?;
        let secret = self.users.get(user).and_then(|u| u.md5.as_deref());
        match secret {
            Some(secret) if md5::md5_verify(user, secret, salt, response) => Ok(()),
            _ => Err(failed(user)),
        }
    }
}

fn failed(user: &str) -> ClientAuthError {
    ClientAuthError::Failed {
        user: user.to_owned(),
    }
}

async fn read_password_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    inbuf: &mut BytesMut,
) -> Result<BytesMut, ClientAuthError> {
    let frame = read_frame(stream, inbuf, MAX_AUTH_MESSAGE_LEN).await?;
    if frame[0] != tag::frontend::PASSWORD {
        return Err(ProtocolError::UnexpectedMessage {
            expected: "password message",
            tag: frame[0],
        }
        .into());
    }
    Ok(frame)
}

/// The secret an unknown user is challenged with, so the exchange runs to its end and fails
/// like a wrong password. Derived once: 4096 PBKDF2 rounds (about a millisecond) per unknown
/// login would stall the session thread and take measurably longer than a known user's
/// precomputed secret.
fn mock_secret() -> ScramSecret {
    static MOCK: std::sync::OnceLock<ScramSecret> = std::sync::OnceLock::new();
    MOCK.get_or_init(|| ScramSecret::derive(b"\0unknown", b"pgtide-mock", 4096))
        .clone()
}
