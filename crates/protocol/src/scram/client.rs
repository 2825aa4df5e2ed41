//! The client side of SCRAM-SHA-256: pgtide authenticating itself to a PostgreSQL server.
//!
//! A thin state machine over `postgres_protocol::authentication::sasl::ScramSha256`, which is
//! what tokio-postgres uses against real servers and which applies SASLprep to the password.
//! This wrapper gives it the same shape as [`super::ScramServer`], turns its `io::Error`s into
//! [`ProtocolError`], and never panics on out-of-order calls.
//!
//! ```text
//! server                              ScramClient
//!   AuthenticationSASL                -> mechanism(), client_first()   -> SASLInitialResponse
//!   AuthenticationSASLContinue        -> handle_server_first()         -> SASLResponse
//!   AuthenticationSASLFinal           -> verify_server_final()
//! ```

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::{SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
use crate::error::ProtocolError;

/// One SCRAM exchange with one server.
pub struct ScramClient {
    inner: ScramSha256,
    mechanism: &'static str,
    client_first: Vec<u8>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingServerFirst,
    AwaitingServerFinal,
    Done,
    Failed,
}

impl ScramClient {
    /// Starts `SCRAM-SHA-256` without channel binding (gs2 flag `n`), which every server that
    /// offers SCRAM accepts, with or without TLS. The client nonce comes from the thread-local
    /// CSPRNG.
    pub fn new(password: impl AsRef<[u8]>) -> ScramClient {
        Self::build(
            password.as_ref(),
            ChannelBinding::unsupported(),
            SCRAM_SHA_256,
        )
    }

    /// Starts `SCRAM-SHA-256-PLUS` with `tls-server-end-point` channel binding, for a TLS
    /// connection to a server that offers it. `server_cert_hash` is the hash of the server's
    /// certificate as RFC 5929 defines it (SHA-256 for SHA-1/MD5/SHA-256 signed certificates).
    pub fn new_plus(password: impl AsRef<[u8]>, server_cert_hash: Vec<u8>) -> ScramClient {
        Self::build(
            password.as_ref(),
            ChannelBinding::tls_server_end_point(server_cert_hash),
            SCRAM_SHA_256_PLUS,
        )
    }

    fn build(password: &[u8], cb: ChannelBinding, mechanism: &'static str) -> ScramClient {
        let inner = ScramSha256::new(password, cb);
        let client_first = inner.message().to_vec();
        ScramClient {
            inner,
            mechanism,
            client_first,
            state: State::AwaitingServerFirst,
        }
    }

    /// The mechanism to name in SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// The client-first-message, for SASLInitialResponse.
    pub fn client_first(&self) -> Vec<u8> {
        self.client_first.clone()
    }

    /// Takes the server-first-message (AuthenticationSASLContinue data) and returns the
    /// client-final-message for SASLResponse.
    ///
    /// # Errors
    /// [`ProtocolError::Scram`] when the message is malformed, the server nonce does not
    /// extend ours, or the call is out of order.
    pub fn handle_server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        self.step(State::AwaitingServerFirst, |inner| {
            inner.update(message)?;
            Ok(inner.message().to_vec())
        })
        .inspect(|_| self.state = State::AwaitingServerFinal)
    }

    /// Checks the server-final-message (AuthenticationSASLFinal data): proves the server knew
    /// the secret too.
    ///
    /// # Errors
    /// [`ProtocolError::Scram`] when the signature is wrong, the server reported an error
    /// (`e=`), or the call is out of order.
    pub fn verify_server_final(&mut self, message: &[u8]) -> Result<(), ProtocolError> {
        self.step(State::AwaitingServerFinal, |inner| inner.finish(message))
            .inspect(|_| self.state = State::Done)
    }

    /// Whether the server's signature has been verified.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step<T>(
        &mut self,
        expected: State,
        f: impl FnOnce(&mut ScramSha256) -> std::io::Result<T>,
    ) -> Result<T, ProtocolError> {
        if self.state != expected {
            self.state = State::Failed;
            return Err(ProtocolError::scram("server message received out of order"));
        }
        f(&mut self.inner).map_err(|e| {
            self.state = State::Failed;
            ProtocolError::scram(e.to_string())
        })
    }
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_shape() {
        let c = ScramClient::new("pw");
        assert_eq!(c.mechanism(), "SCRAM-SHA-256");
        let first = String::from_utf8(c.client_first()).unwrap();
        assert!(first.starts_with("n,,n=,r="), "{first}");
        assert!(first.len() > "n,,n=,r=".len() + 16);

        let c = ScramClient::new_plus("pw", vec![1, 2, 3]);
        assert_eq!(c.mechanism(), "SCRAM-SHA-256-PLUS");
        assert!(c
            .client_first()
            .starts_with(b"p=tls-server-end-point,,n=,r="));
    }

    #[test]
    fn rejects_bad_server_first() {
        let mut c = ScramClient::new("pw");
        // Nonce that does not start with ours.
        assert!(c
            .handle_server_first(b"r=somethingelse,s=c2FsdA==,i=4096")
            .is_err());
        assert!(!c.is_done());
        // Failed exchanges stay failed.
        assert!(c.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn out_of_order_does_not_panic() {
        let mut c = ScramClient::new("pw");
        assert!(c.verify_server_final(b"v=AAAA").is_err());
        assert!(c.handle_server_first(b"r=x,s=c2FsdA==,i=1").is_err());
        let _ = c.client_first();
    }

    #[test]
    fn server_error_attribute() {
        let mut server = crate::scram::ScramServer::with_random_nonce(
            crate::scram::ScramSecret::from_password("pw"),
        );
        let mut c = ScramClient::new("pw");
        let first = server.handle_client_first(&c.client_first()).unwrap();
        c.handle_server_first(&first).unwrap();
        assert!(c.verify_server_final(b"e=invalid-proof").is_err());
    }
}
