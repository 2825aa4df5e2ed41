//! The client side of SCRAM-SHA-256: pgtide authenticating itself to a PostgreSQL server.
//!
//! Written out here (RFC 5802 / RFC 7677, as libpq does it) rather than borrowed from a driver
//! so that the keys derived from the password can be reused: PBKDF2 with the server's 4096
//! iterations costs about a millisecond of CPU, and a pool opens many connections to the same
//! server with the same password, salt and iteration count. [`ScramKeys`] are what an exchange
//! derived; handing them to the next exchange ([`ScramClient::with_keys`]) skips the
//! derivation when the server's salt and iteration count are unchanged. The password goes
//! through SASLprep as PostgreSQL's own client does.
//!
//! ```text
//! server                              ScramClient
//!   AuthenticationSASL                -> mechanism(), client_first()   -> SASLInitialResponse
//!   AuthenticationSASLContinue        -> handle_server_first()         -> SASLResponse
//!   AuthenticationSASLFinal           -> verify_server_final(), keys()
//! ```

use super::{
    attribute, b64_decode, b64_encode, constant_time_eq, hi, hmac, is_printable_nonce, sha256,
    SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use crate::error::ProtocolError;

/// Random bytes in a client nonce (libpq's `SCRAM_RAW_NONCE_LEN`), base64-encoded.
const CLIENT_NONCE_LEN: usize = 18;

/// The most PBKDF2 rounds a server may ask for. The derivation runs on the runtime thread, so a
/// hostile server (or anyone between pgtide and an unverified server) could otherwise stall it
/// for minutes with `i=4294967295`. 100,000 (about 25 ms) is the cap postgres-protocol and
/// pgjdbc apply; PostgreSQL's default is 4096.
pub const MAX_ITERATIONS: u32 = 100_000;

/// The keys SCRAM derives from a password for one salt and iteration count.
///
/// They stand for the password (whoever has them can log in as the user), so keep them only
/// where the password itself is kept. `Debug` shows neither key.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    salt: Vec<u8>,
    iterations: u32,
    client_key: [u8; 32],
    server_key: [u8; 32],
}

impl ScramKeys {
    /// Derives the keys (PBKDF2-HMAC-SHA-256, `iterations` rounds) from a password that has
    /// been through SASLprep.
    fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = hi(password, salt, iterations);
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            client_key: hmac(&salted, &[b"Client Key"]),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    fn fits(&self, salt: &[u8], iterations: u32) -> bool {
        self.iterations == iterations && self.salt == salt
    }
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// One SCRAM exchange with one server.
pub struct ScramClient {
    /// The password after SASLprep.
    password: Vec<u8>,
    mechanism: &'static str,
    /// `n,,` or `p=tls-server-end-point,,`.
    gs2_header: &'static str,
    /// Channel binding data (the server certificate's hash) for `-PLUS`, else empty.
    cbind_data: Vec<u8>,
    nonce: String,
    /// Keys from an earlier exchange, used when the server's salt and iterations match.
    cached: Option<ScramKeys>,
    /// The keys this exchange used, once the server-first-message arrived.
    keys: Option<ScramKeys>,
    derived: bool,
    server_signature: [u8; 32],
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
            SCRAM_SHA_256,
            "n,,",
            Vec::new(),
            random_nonce(),
        )
    }

    /// Starts `SCRAM-SHA-256-PLUS` with `tls-server-end-point` channel binding, for a TLS
    /// connection to a server that offers it. `server_cert_hash` is the hash of the server's
    /// certificate as RFC 5929 defines it (SHA-256 for SHA-1/MD5/SHA-256 signed certificates).
    pub fn new_plus(password: impl AsRef<[u8]>, server_cert_hash: Vec<u8>) -> ScramClient {
        Self::build(
            password.as_ref(),
            SCRAM_SHA_256_PLUS,
            "p=tls-server-end-point,,",
            server_cert_hash,
            random_nonce(),
        )
    }

    /// [`ScramClient::new`] with a given client nonce (printable ASCII except `,`), to
    /// reproduce a published exchange in tests; never for real connections.
    #[cfg(test)]
    fn with_nonce_str(
        password: impl AsRef<[u8]>,
        nonce: &str,
    ) -> Result<ScramClient, ProtocolError> {
        if !is_printable_nonce(nonce) {
            return Err(ProtocolError::scram("client nonce is not printable"));
        }
        Ok(Self::build(
            password.as_ref(),
            SCRAM_SHA_256,
            "n,,",
            Vec::new(),
            nonce.to_owned(),
        ))
    }

    /// Offers keys derived by an earlier exchange with the same password: used (and PBKDF2
    /// skipped) when the server sends the same salt and iteration count, ignored otherwise.
    #[must_use]
    pub fn with_keys(mut self, keys: Option<ScramKeys>) -> ScramClient {
        self.cached = keys;
        self
    }

    fn build(
        password: &[u8],
        mechanism: &'static str,
        gs2_header: &'static str,
        cbind_data: Vec<u8>,
        nonce: String,
    ) -> ScramClient {
        ScramClient {
            password: saslprep(password),
            mechanism,
            gs2_header,
            cbind_data,
            nonce,
            cached: None,
            keys: None,
            derived: false,
            server_signature: [0; 32],
            state: State::AwaitingServerFirst,
        }
    }

    /// The mechanism to name in SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// The client-first-message, for SASLInitialResponse. The user name is left empty, as
    /// libpq does: PostgreSQL takes it from the startup packet.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare()).into_bytes()
    }

    fn client_first_bare(&self) -> String {
        format!("n=,r={}", self.nonce)
    }

    /// Takes the server-first-message (AuthenticationSASLContinue data) and returns the
    /// client-final-message for SASLResponse.
    ///
    /// # Errors
    /// [`ProtocolError::Scram`] when the message is malformed, the server nonce does not
    /// extend ours, or the call is out of order.
    pub fn handle_server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        if self.state != State::AwaitingServerFirst {
            return Err(self.fail("server message received out of order"));
        }
        let Ok(server_first) = std::str::from_utf8(message) else {
            return Err(self.fail("server-first-message is not UTF-8"));
        };
        let (nonce, salt, iterations) = match parse_server_first(server_first) {
            Ok(parts) => parts,
            Err(reason) => return Err(self.fail(reason)),
        };
        if !(nonce.len() > self.nonce.len() && nonce.starts_with(&self.nonce)) {
            return Err(self.fail("the server nonce does not extend the client nonce"));
        }
        let keys = match self.cached.take().filter(|k| k.fits(&salt, iterations)) {
            Some(keys) => keys,
            None => {
                self.derived = true;
                ScramKeys::derive(&self.password, &salt, iterations)
            }
        };
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.cbind_data);
        let without_proof = format!("c={},r={}", b64_encode(&cbind), nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare(),
            server_first,
            without_proof
        );
        let stored_key = sha256(&keys.client_key);
        let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.server_signature = hmac(&keys.server_key, &[auth_message.as_bytes()]);
        self.keys = Some(keys);
        self.state = State::AwaitingServerFinal;
        Ok(format!("{without_proof},p={}", b64_encode(&proof)).into_bytes())
    }

    /// Checks the server-final-message (AuthenticationSASLFinal data): proves the server knew
    /// the secret too.
    ///
    /// # Errors
    /// [`ProtocolError::Scram`] when the signature is wrong, the server reported an error
    /// (`e=`), or the call is out of order.
    pub fn verify_server_final(&mut self, message: &[u8]) -> Result<(), ProtocolError> {
        if self.state != State::AwaitingServerFinal {
            return Err(self.fail("server message received out of order"));
        }
        let text = std::str::from_utf8(message).unwrap_or_default();
        let first = text.split(',').next();
        if let Some(error) = attribute(first, 'e') {
            // Escaped: the text comes from the server and ends up in logs.
            let reason = format!("the server reported an error: {}", error.escape_debug());
            return Err(self.fail(&reason));
        }
        let verified = attribute(first, 'v')
            .and_then(b64_decode)
            .is_some_and(|v| constant_time_eq(&v, &self.server_signature));
        if !verified {
            return Err(self.fail("the server's signature is wrong"));
        }
        self.state = State::Done;
        Ok(())
    }

    /// Whether the server's signature has been verified.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The keys this exchange used, once the server proved it knows the secret: worth keeping
    /// for the next exchange with the same password ([`ScramClient::with_keys`]).
    pub fn keys(&self) -> Option<&ScramKeys> {
        self.keys.as_ref().filter(|_| self.is_done())
    }

    /// Whether this exchange had to derive its keys (no fitting keys were offered).
    pub fn derived_keys(&self) -> bool {
        self.derived
    }

    fn fail(&mut self, reason: &str) -> ProtocolError {
        self.state = State::Failed;
        ProtocolError::scram(reason)
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

fn random_nonce() -> String {
    let mut raw = [0u8; CLIENT_NONCE_LEN];
    rand::fill(&mut raw[..]);
    b64_encode(&raw)
}

/// SASLprep (RFC 4013) of a UTF-8 password; a password that is not UTF-8, that SASLprep
/// refuses, or that it maps to nothing is used as it is, as PostgreSQL's `pg_saslprep` does.
/// Known difference, shared with postgres-protocol: PostgreSQL checks for prohibited
/// characters before normalising, the `stringprep` crate after, so a password such as
/// `"a\u{0341}"` is normalised here and used raw by PostgreSQL (the login then fails).
fn saslprep(password: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(password) {
        Ok(text) => match stringprep::saslprep(text) {
            Ok(prepped) if !prepped.is_empty() || text.is_empty() => {
                prepped.into_owned().into_bytes()
            }
            _ => password.to_vec(),
        },
        Err(_) => password.to_vec(),
    }
}

/// `r=nonce,s=salt,i=iterations[,extensions]` → (nonce, salt, iterations).
fn parse_server_first(text: &str) -> Result<(String, Vec<u8>, u32), &'static str> {
    let mut parts = text.split(',');
    let first = parts.next();
    if attribute(first, 'm').is_some() {
        return Err("the server requires an unsupported SCRAM extension");
    }
    let nonce = attribute(first, 'r').ok_or("server-first-message has no nonce")?;
    if !is_printable_nonce(nonce) {
        return Err("the server nonce is not printable");
    }
    let salt = attribute(parts.next(), 's')
        .and_then(b64_decode)
        .filter(|s| !s.is_empty())
        .ok_or("server-first-message has no valid salt")?;
    let iterations = attribute(parts.next(), 'i')
        .and_then(|i| i.parse::<u32>().ok())
        .filter(|&i| i > 0)
        .ok_or("server-first-message has no valid iteration count")?;
    if iterations > MAX_ITERATIONS {
        return Err("the server asks for more PBKDF2 iterations than pgtide allows (100000)");
    }
    Ok((nonce.to_owned(), salt, iterations))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::{ScramSecret, ScramServer};

    /// Runs a whole exchange between `client` and `server`; panics where either side refuses.
    fn exchange(client: &mut ScramClient, server: &mut ScramServer) {
        let first = server.handle_client_first(&client.client_first()).unwrap();
        let last = client.handle_server_first(&first).unwrap();
        let done = server.handle_client_final(&last).unwrap();
        client.verify_server_final(&done).unwrap();
    }

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

    /// RFC 7677's example exchange with the user name PostgreSQL leaves empty (`n=` instead of
    /// `n=user`). The expected proof and signature were computed independently (Python's
    /// hashlib/hmac, which give the RFC's own `p=dHzb…` for `n=user`).
    #[test]
    fn published_exchange_with_an_empty_user_name() {
        let mut client = ScramClient::with_nonce_str("pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(client.client_first(), b"n,,n=,r=rOprNGfwEbeRWgbNEkqO");
        let last = client
            .handle_server_first(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k="
        );
        assert!(
            client.keys().is_none(),
            "not before the server proved itself"
        );
        client
            .verify_server_final(b"v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=")
            .unwrap();
        assert!(client.is_done() && client.derived_keys() && client.keys().is_some());

        // Our server side agrees.
        let secret = ScramSecret::derive(
            b"pencil",
            &b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            4096,
        );
        let mut server =
            ScramServer::with_nonce_str(secret, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        let mut client = ScramClient::with_nonce_str("pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        exchange(&mut client, &mut server);
    }

    #[test]
    fn matches_the_driver_implementation() {
        // postgres-protocol's client (what tokio-postgres uses) and ours prove the same
        // password to the same server.
        use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
        for password in ["pencil", "pässwörd", "", "a\u{00A0}b"] {
            let secret = ScramSecret::from_password(password);
            let mut server = ScramServer::with_random_nonce(secret.clone());
            let mut theirs = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
            let first = server.handle_client_first(theirs.message()).unwrap();
            theirs.update(&first).unwrap();
            assert!(server.handle_client_final(theirs.message()).is_ok());

            exchange(
                &mut ScramClient::new(password),
                &mut ScramServer::with_random_nonce(secret),
            );
        }
    }

    #[test]
    fn kept_keys_skip_the_derivation_while_the_salt_matches() {
        let secret = ScramSecret::from_password("pw");
        let server = |secret: &ScramSecret| ScramServer::with_random_nonce(secret.clone());
        let mut first = ScramClient::new("pw");
        exchange(&mut first, &mut server(&secret));
        assert!(first.derived_keys());
        let keys = first.keys().cloned();
        assert!(keys.is_some());

        let mut second = ScramClient::new("pw").with_keys(keys.clone());
        exchange(&mut second, &mut server(&secret));
        assert!(
            !second.derived_keys(),
            "same salt and iterations: no PBKDF2"
        );
        assert_eq!(second.keys(), keys.as_ref());

        // The server's secret changed (new salt): the kept keys are ignored, not misused.
        let mut third = ScramClient::new("pw").with_keys(keys.clone());
        exchange(&mut third, &mut server(&ScramSecret::from_password("pw")));
        assert!(third.derived_keys());
        assert_ne!(third.keys(), keys.as_ref());
    }

    #[test]
    fn keys_are_offered_only_after_the_server_proved_itself() {
        let mut server = ScramServer::with_random_nonce(ScramSecret::from_password("pw"));
        let mut client = ScramClient::new("pw");
        let first = server.handle_client_first(&client.client_first()).unwrap();
        client.handle_server_first(&first).unwrap();
        assert!(client.keys().is_none());
        assert!(client.verify_server_final(b"v=AAAA").is_err());
        assert!(client.keys().is_none());
        assert!(!format!("{:?}", ScramKeys::derive(b"pw", b"salt", 1)).contains("key:"));
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
        for (bad, why) in [
            (&b"m=ext,r=NONCEx,s=c2FsdA==,i=1"[..], "extension"),
            (b"r=NONCE", "salt"),
            (b"s=c2FsdA==,i=1", "nonce"),
            (b"r=NONCEx,s=,i=1", "salt"),
            (b"r=NONCEx,s=c2FsdA==,i=x", "iteration"),
            (
                b"r=NONCEx,s=c2FsdA==,i=100001",
                "iterations than pgtide allows",
            ),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let mut c = ScramClient::with_nonce_str("pw", "NONCE").unwrap();
            let err = c.handle_server_first(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let mut c = ScramClient::with_nonce_str("pw", "NONCE").unwrap();
        assert!(c
            .handle_server_first(b"r=NONCEx,s=c2FsdA==,i=100000")
            .is_ok());
        let mut c = ScramClient::with_nonce_str("pw", "NONCE").unwrap();
        assert!(c.handle_server_first(b"r=NONCEx,s=c2FsdA==,i=0").is_err());
        let mut c = ScramClient::with_nonce_str("pw", "NONCE").unwrap();
        assert!(c.handle_server_first(b"r=NONCE,s=c2FsdA==,i=1").is_err());
    }

    #[test]
    fn a_signature_off_by_one_bit_is_refused() {
        let mut server = ScramServer::with_random_nonce(ScramSecret::from_password("pw"));
        let mut c = ScramClient::new("pw");
        let first = server.handle_client_first(&c.client_first()).unwrap();
        let last = c.handle_server_first(&first).unwrap();
        let done = String::from_utf8(server.handle_client_final(&last).unwrap()).unwrap();
        let mut signature = b64_decode(done.strip_prefix("v=").unwrap()).unwrap();
        signature[31] ^= 1;
        let forged = format!("v={}", b64_encode(&signature));
        assert!(c.verify_server_final(forged.as_bytes()).is_err());
        assert!(c.keys().is_none());
    }

    #[test]
    fn channel_binding_data_goes_into_the_proof() {
        let mut c = ScramClient::new_plus("pw", vec![0xAB; 32]);
        let nonce = String::from_utf8(c.client_first()).unwrap();
        let nonce = nonce.rsplit("r=").next().unwrap().to_owned();
        let last = c
            .handle_server_first(format!("r={nonce}xyz,s=c2FsdA==,i=1").as_bytes())
            .unwrap();
        let mut expected = b"p=tls-server-end-point,,".to_vec();
        expected.extend([0xAB; 32]);
        let last = String::from_utf8(last).unwrap();
        assert!(
            last.starts_with(&format!("c={},r=", b64_encode(&expected))),
            "{last}"
        );
    }

    #[test]
    fn kept_keys_need_the_same_iteration_count_too() {
        let keys = ScramKeys::derive(b"pw", b"salt", 4096);
        let mut c = ScramClient::with_nonce_str("pw", "NONCE")
            .unwrap()
            .with_keys(Some(keys.clone()));
        c.handle_server_first(format!("r=NONCEx,s={},i=4097", b64_encode(b"salt")).as_bytes())
            .unwrap();
        assert!(c.derived_keys());
        let mut c = ScramClient::with_nonce_str("pw", "NONCE")
            .unwrap()
            .with_keys(Some(keys));
        c.handle_server_first(format!("r=NONCEx,s={},i=4096", b64_encode(b"salt")).as_bytes())
            .unwrap();
        assert!(!c.derived_keys());
    }

    #[test]
    fn saslprep_falls_back_to_the_raw_password_as_postgres_does() {
        assert_eq!(saslprep(b"pencil"), b"pencil");
        assert_eq!(saslprep("a\u{00A0}b".as_bytes()), b"a b");
        // Maps to nothing: PostgreSQL uses the raw bytes.
        assert_eq!(saslprep("\u{00AD}".as_bytes()), "\u{00AD}".as_bytes());
        assert_eq!(saslprep(b"\xff\xfe"), b"\xff\xfe");
        assert_eq!(saslprep(b""), b"");
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
        let mut server = ScramServer::with_random_nonce(ScramSecret::from_password("pw"));
        let mut c = ScramClient::new("pw");
        let first = server.handle_client_first(&c.client_first()).unwrap();
        c.handle_server_first(&first).unwrap();
        let err = c.verify_server_final(b"e=invalid-proof").unwrap_err();
        assert!(err.to_string().contains("invalid-proof"), "{err}");
        let mut c = ScramClient::new("pw");
        let first = ScramServer::with_random_nonce(ScramSecret::from_password("pw"))
            .handle_client_first(&c.client_first())
            .unwrap();
        c.handle_server_first(&first).unwrap();
        let err = c.verify_server_final(b"e=bad\nINJECTED").unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}
