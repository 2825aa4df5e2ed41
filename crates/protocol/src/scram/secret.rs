//! The stored SCRAM-SHA-256 verifier, in PostgreSQL's text form
//! `SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>`
//! (what `pg_authid.rolpassword` holds and what users put in the auth file).
//!
//! The verifier is enough to check a client's proof but not to log in as the user elsewhere,
//! unlike an md5 hash.

use std::fmt;
use std::str::FromStr;

use super::{b64_decode, b64_encode, hi, hmac, sha256};
use crate::error::ProtocolError;

/// Iterations PostgreSQL uses by default (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length PostgreSQL uses.
pub const DEFAULT_SALT_LEN: usize = 16;

const PREFIX: &str = "SCRAM-SHA-256$";

/// A SCRAM-SHA-256 verifier. `Debug` redacts the keys so it can sit in logged config structs.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// Salt (raw bytes).
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`: checks the client proof.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server-final message.
    pub server_key: [u8; 32],
}

impl ScramSecret {
    /// Parses PostgreSQL's text form.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidScramSecret`] saying which part is wrong.
    pub fn parse(s: &str) -> Result<ScramSecret, ProtocolError> {
        let err = |reason| ProtocolError::InvalidScramSecret { reason };
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or(err("does not start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(err("expected <iterations>:<salt>$<StoredKey>:<ServerKey>"))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(err("expected <iterations>:<salt>"))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(err("expected <StoredKey>:<ServerKey>"))?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&i| i > 0)
            .ok_or(err("iteration count is not a positive integer"))?;
        let salt = b64_decode(salt).ok_or(err("salt is not valid base64"))?;
        let key = |k: &str, what| -> Result<[u8; 32], ProtocolError> {
            b64_decode(k)
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(err(what))
        };
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: key(stored_key, "StoredKey is not 32 bytes of base64")?,
            server_key: key(server_key, "ServerKey is not 32 bytes of base64")?,
        })
    }

    /// Whether `s` looks like a SCRAM secret (as opposed to a plain password or md5 hash), the
    /// check an auth-file loader makes before choosing how to read a value.
    pub fn looks_like_secret(s: &str) -> bool {
        s.starts_with(PREFIX)
    }

    /// The text form, for writing to files or comparing with `pg_authid`.
    pub fn to_postgres_format(&self) -> String {
        format!(
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            b64_encode(&self.salt),
            b64_encode(&self.stored_key),
            b64_encode(&self.server_key)
        )
    }

    /// Derives the verifier from a plain password with the given salt and iteration count.
    ///
    /// The password bytes are used as given. PostgreSQL runs SASLprep first; that is the
    /// identity for ASCII passwords (and for most already-normalized Unicode ones). For
    /// arbitrary non-ASCII passwords use [`ScramSecret::from_password`], which applies SASLprep.
    /// An iteration count of 0 is treated as 1.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramSecret {
        let salted = hi(password, salt, iterations.max(1));
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramSecret {
            iterations: iterations.max(1),
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// Derives a verifier from a plain password with a fresh random salt and
    /// [`DEFAULT_ITERATIONS`], applying SASLprep exactly as PostgreSQL and libpq do (via
    /// `postgres-protocol`). Use it once when loading a plain password from the auth file.
    pub fn from_password(password: &str) -> ScramSecret {
        let text = postgres_protocol::password::scram_sha_256(password.as_bytes());
        ScramSecret::parse(&text).expect("postgres-protocol produces well-formed secrets")
    }
}

impl FromStr for ScramSecret {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScramSecret::parse(s)
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &b64_encode(&self.salt))
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 example: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    pub(crate) const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    #[test]
    fn derive_round_trips_through_text() {
        let salt = b64_decode(RFC_SALT).unwrap();
        let secret = ScramSecret::derive(b"pencil", &salt, DEFAULT_ITERATIONS);
        let text = secret.to_postgres_format();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert_eq!(ScramSecret::parse(&text).unwrap(), secret);
        assert_eq!(text.parse::<ScramSecret>().unwrap(), secret);
    }

    #[test]
    fn matches_postgres_protocol_derivation() {
        let secret = ScramSecret::from_password("pencil");
        assert_eq!(secret.iterations, DEFAULT_ITERATIONS);
        assert_eq!(secret.salt.len(), DEFAULT_SALT_LEN);
        assert_eq!(
            ScramSecret::derive(b"pencil", &secret.salt, secret.iterations),
            secret
        );
    }

    #[test]
    fn debug_redacts_keys() {
        let secret = ScramSecret::derive(b"pw", b"salt", 1);
        let dbg = format!("{secret:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains(&b64_encode(&secret.stored_key)));
        assert!(!dbg.contains(&b64_encode(&secret.server_key)));
    }

    #[test]
    fn parse_errors() {
        let good = ScramSecret::derive(b"pw", b"salt", 4096).to_postgres_format();
        assert!(ScramSecret::looks_like_secret(&good));
        let bad = [
            "",
            "md5abc",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:c2FsdA==",
            "SCRAM-SHA-256$4096$a:b",
            "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:!!$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA",
        ];
        for s in bad {
            assert!(
                matches!(
                    ScramSecret::parse(s),
                    Err(ProtocolError::InvalidScramSecret { .. })
                ),
                "{s}"
            );
        }
    }
}
