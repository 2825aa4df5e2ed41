//! The server side of SCRAM-SHA-256: pgtide authenticating a client against a stored secret.
//!
//! Follows PostgreSQL's `auth-scram.c`: the user name in the client-first-message is ignored
//! (the StartupMessage already named the user), an authorization identity is refused, and
//! channel binding is refused because pgtide does not offer `SCRAM-SHA-256-PLUS`; a client that
//! supports it but was not offered it sends `y`, which is accepted.
//!
//! ```text
//! client                               ScramServer
//!   SASLInitialResponse(client-first)  -> handle_client_first  -> AuthenticationSASLContinue
//!   SASLResponse(client-final)         -> handle_client_final  -> AuthenticationSASLFinal
//!                                                                 then AuthenticationOk
//! ```
//! A wrong proof is [`ProtocolError::AuthenticationFailed`] (answer 28P01, as PostgreSQL does);
//! a malformed message is [`ProtocolError::Scram`] (08P01).

use super::{
    attribute, b64_decode, b64_encode, constant_time_eq, hmac, is_printable_nonce, sha256,
    ScramSecret,
};
use crate::error::ProtocolError;

/// Random bytes in a server nonce, as PostgreSQL uses (`SCRAM_RAW_NONCE_LEN`).
pub const SERVER_NONCE_LEN: usize = 18;

/// One SCRAM exchange with one client. Not reusable: create one per authentication attempt.
#[derive(Debug)]
pub struct ScramServer {
    secret: ScramSecret,
    server_nonce: String,
    state: State,
}

#[derive(Debug)]
enum State {
    AwaitingClientFirst,
    AwaitingClientFinal {
        /// `n,,` or `y,,`: what the client-final `c=` attribute must echo.
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
    Failed,
}

impl ScramServer {
    /// Starts an exchange; `server_nonce` are random bytes (base64-encoded into the nonce).
    /// Passing them in keeps the state machine deterministic under test.
    pub fn new(secret: ScramSecret, server_nonce: &[u8]) -> ScramServer {
        ScramServer {
            secret,
            server_nonce: b64_encode(server_nonce),
            state: State::AwaitingClientFirst,
        }
    }

    /// Starts an exchange with [`SERVER_NONCE_LEN`] bytes from the thread-local CSPRNG.
    pub fn with_random_nonce(secret: ScramSecret) -> ScramServer {
        let mut nonce = [0u8; SERVER_NONCE_LEN];
        rand::fill(&mut nonce[..]);
        ScramServer::new(secret, &nonce)
    }

    /// Starts an exchange with a server nonce given as text (printable ASCII except `,`), e.g.
    /// to reproduce published test vectors.
    ///
    /// # Errors
    /// [`ProtocolError::Scram`] if `nonce` has characters a nonce may not contain.
    pub fn with_nonce_str(secret: ScramSecret, nonce: &str) -> Result<ScramServer, ProtocolError> {
        if !is_printable_nonce(nonce) {
            return Err(ProtocolError::scram("server nonce is not printable"));
        }
        Ok(ScramServer {
            secret,
            server_nonce: nonce.to_owned(),
            state: State::AwaitingClientFirst,
        })
    }

    /// Whether the exchange completed successfully.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes the client-first-message (the data of SASLInitialResponse, whose mechanism the
    /// caller has checked is `SCRAM-SHA-256`) and returns the server-first-message for
    /// AuthenticationSASLContinue.
    ///
    /// # Errors
    /// [`ProtocolError::ChannelBindingNotSupported`] for `p=` channel binding,
    /// [`ProtocolError::Scram`] for anything malformed or out of order.
    pub fn handle_client_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        if !matches!(self.state, State::AwaitingClientFirst) {
            return Err(self.fail("client-first-message received out of order"));
        }
        match self.client_first(message) {
            Ok(out) => Ok(out),
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    fn client_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let msg = std::str::from_utf8(message)
            .map_err(|_| ProtocolError::scram("client-first-message is not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg
            .split_once(',')
            .ok_or_else(|| ProtocolError::scram("malformed gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ProtocolError::ChannelBindingNotSupported),
            _ => return Err(ProtocolError::scram("unexpected channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| ProtocolError::scram("malformed gs2 header"))?;
        if !authzid.is_empty() {
            return Err(ProtocolError::scram(
                "client uses authorization identity, but it is not supported",
            ));
        }
        let mut parts = bare.split(',');
        let first = parts.next();
        if attribute(first, 'm').is_some() {
            return Err(ProtocolError::scram(
                "client requires an unsupported SCRAM extension",
            ));
        }
        // The user name is ignored, as in PostgreSQL: the StartupMessage names the user.
        attribute(first, 'n')
            .ok_or_else(|| ProtocolError::scram("expected attribute \"n\" (username)"))?;
        let client_nonce = attribute(parts.next(), 'r')
            .ok_or_else(|| ProtocolError::scram("expected attribute \"r\" (nonce)"))?;
        if !is_printable_nonce(client_nonce) {
            return Err(ProtocolError::scram("client nonce is not printable"));
        }
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64_encode(&self.secret.salt),
            self.secret.iterations
        );
        let out = server_first.clone().into_bytes();
        self.state = State::AwaitingClientFinal {
            gs2_header: format!("{flag},,"),
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        };
        Ok(out)
    }

    /// Takes the client-final-message (the data of SASLResponse), verifies the proof and
    /// returns the server-final-message (`v=<signature>`) for AuthenticationSASLFinal.
    ///
    /// # Errors
    /// [`ProtocolError::AuthenticationFailed`] when the proof is wrong,
    /// [`ProtocolError::Scram`] for anything malformed, a nonce mismatch or a call out of
    /// order.
    pub fn handle_client_final(&mut self, message: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let State::AwaitingClientFinal {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(self.fail("client-final-message received out of order"));
        };
        let msg = std::str::from_utf8(message)
            .map_err(|_| ProtocolError::scram("client-final-message is not UTF-8"))?;

        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| ProtocolError::scram("expected attribute \"p\" (proof) at the end"))?;
        let mut parts = without_proof.split(',');
        let cbind = attribute(parts.next(), 'c')
            .and_then(b64_decode)
            .ok_or_else(|| ProtocolError::scram("expected attribute \"c\" (channel binding)"))?;
        if cbind != gs2_header.as_bytes() {
            return Err(ProtocolError::scram(
                "channel binding data does not match the client-first-message",
            ));
        }
        let client_nonce = attribute(parts.next(), 'r')
            .ok_or_else(|| ProtocolError::scram("expected attribute \"r\" (nonce)"))?;
        if client_nonce != nonce {
            return Err(ProtocolError::scram("nonce does not match"));
        }
        // Any further attributes are extensions, which are ignored.
        let proof = b64_decode(proof)
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
            .ok_or_else(|| ProtocolError::scram("malformed proof"))?;

        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&self.secret.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        if !constant_time_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Err(ProtocolError::AuthenticationFailed);
        }
        let server_signature = hmac(&self.secret.server_key, &[auth_message.as_bytes()]);
        self.state = State::Done;
        Ok(format!("v={}", b64_encode(&server_signature)).into_bytes())
    }

    fn fail(&mut self, reason: &str) -> ProtocolError {
        self.state = State::Failed;
        ProtocolError::scram(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::client::ScramClient;
    use crate::scram::secret::DEFAULT_ITERATIONS;

    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_secret() -> ScramSecret {
        let salt = b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramSecret::derive(b"pencil", &salt, DEFAULT_ITERATIONS)
    }

    fn rfc_server() -> ScramServer {
        ScramServer::with_nonce_str(rfc_secret(), RFC_SERVER_NONCE).unwrap()
    }

    #[test]
    fn rfc7677_vector() {
        let mut server = rfc_server();
        let first = server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
            .unwrap();
        assert_eq!(first, RFC_SERVER_FIRST.as_bytes());
        assert!(!server.is_done());
        let last = server
            .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
            .unwrap();
        assert_eq!(last, RFC_SERVER_FINAL.as_bytes());
        assert!(server.is_done());
        // No third step.
        assert!(server
            .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
            .is_err());
    }

    #[test]
    fn wrong_proof_is_auth_failure() {
        let mut server = rfc_server();
        server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
            .unwrap();
        let tampered = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHza");
        assert_eq!(
            server.handle_client_final(tampered.as_bytes()),
            Err(ProtocolError::AuthenticationFailed)
        );
        assert!(!server.is_done());
    }

    #[test]
    fn wrong_password_secret_fails() {
        let salt = b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let secret = ScramSecret::derive(b"pencil2", &salt, DEFAULT_ITERATIONS);
        let mut server = ScramServer::with_nonce_str(secret, RFC_SERVER_NONCE).unwrap();
        server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
            .unwrap();
        assert_eq!(
            server.handle_client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ProtocolError::AuthenticationFailed)
        );
    }

    #[test]
    fn username_is_ignored_and_y_flag_accepted() {
        let mut server = rfc_server();
        let first = server.handle_client_first(b"y,,n=,r=abc").unwrap();
        assert!(first.starts_with(b"r=abc%hvYD"));
        // c= must echo "y,," (base64 eSws), not "n,,".
        let bad = format!("c=biws,r=abc{RFC_SERVER_NONCE},p=AAAA");
        assert!(matches!(
            server.handle_client_final(bad.as_bytes()),
            Err(ProtocolError::Scram { .. })
        ));
    }

    #[test]
    fn client_first_rejections() {
        type Check = fn(&ProtocolError) -> bool;
        let cases: &[(&[u8], Check)] = &[
            (b"p=tls-server-end-point,,n=,r=abc", |e| {
                *e == ProtocolError::ChannelBindingNotSupported
            }),
            (b"n,a=admin,n=,r=abc", |e| {
                matches!(e, ProtocolError::Scram { .. })
            }),
            (b"n,,m=ext,n=,r=abc", |e| {
                matches!(e, ProtocolError::Scram { .. })
            }),
            (b"n,,n=,r=a b", |e| matches!(e, ProtocolError::Scram { .. })),
            (b"n,,r=abc", |e| matches!(e, ProtocolError::Scram { .. })),
            (b"n,,n=", |e| matches!(e, ProtocolError::Scram { .. })),
            (b"x,,n=,r=abc", |e| matches!(e, ProtocolError::Scram { .. })),
            (b"n", |e| matches!(e, ProtocolError::Scram { .. })),
            (b"\xff", |e| matches!(e, ProtocolError::Scram { .. })),
        ];
        for (msg, check) in cases {
            let mut server = rfc_server();
            let err = server.handle_client_first(msg).unwrap_err();
            assert!(check(&err), "{:?} -> {err:?}", String::from_utf8_lossy(msg));
            // A failed exchange stays failed.
            assert!(server
                .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
                .is_err());
        }
    }

    #[test]
    fn client_final_rejections() {
        let nonce = format!("rOprNGfwEbeRWgbNEkqO{RFC_SERVER_NONCE}");
        let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        for msg in [
            format!("c=biws,r={nonce}"),           // no proof
            format!("c=biws,r=other,p={proof}"),   // wrong nonce
            format!("r={nonce},p={proof}"),        // no channel binding
            format!("c=eSws,r={nonce},p={proof}"), // y,, after n,,
            format!("c=biws,r={nonce},p=short"),   // proof not 32 bytes
            format!("c=!!,r={nonce},p={proof}"),   // bad base64
        ] {
            let mut server = rfc_server();
            server
                .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
                .unwrap();
            assert!(
                matches!(
                    server.handle_client_final(msg.as_bytes()),
                    Err(ProtocolError::Scram { .. })
                ),
                "{msg}"
            );
        }
        // Final before first.
        let mut server = rfc_server();
        assert!(server
            .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
            .is_err());
    }

    #[test]
    fn extensions_before_proof_are_ignored() {
        // Recompute the proof for a client-final carrying an extension attribute.
        let secret = rfc_secret();
        let mut server = ScramServer::new(secret, b"fixed-nonce-bytes!");
        let server_first = server.handle_client_first(b"n,,n=,r=cn").unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        let nonce = &server_first[2..server_first.find(',').unwrap()];
        let without_proof = format!("c=biws,r={nonce},x=ext");
        let auth_message = format!("n=,r=cn,{server_first},{without_proof}");
        let salt = b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = crate::scram::hi(b"pencil", &salt, 4096);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let sig = hmac(&sha256(&client_key), &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        let msg = format!("{without_proof},p={}", b64_encode(&proof));
        assert!(server.handle_client_final(msg.as_bytes()).is_ok());
    }

    #[test]
    fn end_to_end_with_client() {
        for password in ["pencil", "correct horse battery staple", ""] {
            let secret = ScramSecret::from_password(password);
            let mut server = ScramServer::with_random_nonce(secret);
            let mut client = ScramClient::new(password);
            let first = server.handle_client_first(&client.client_first()).unwrap();
            let last = client.handle_server_first(&first).unwrap();
            let server_final = server.handle_client_final(&last).unwrap();
            client.verify_server_final(&server_final).unwrap();
            assert!(server.is_done());
        }
    }

    #[test]
    fn end_to_end_wrong_password() {
        let mut server = ScramServer::with_random_nonce(ScramSecret::from_password("right"));
        let mut client = ScramClient::new("wrong");
        let first = server.handle_client_first(&client.client_first()).unwrap();
        let last = client.handle_server_first(&first).unwrap();
        assert_eq!(
            server.handle_client_final(&last),
            Err(ProtocolError::AuthenticationFailed)
        );
    }

    #[test]
    fn client_detects_forged_server_signature() {
        let mut server = ScramServer::with_random_nonce(ScramSecret::from_password("pw"));
        let mut client = ScramClient::new("pw");
        let first = server.handle_client_first(&client.client_first()).unwrap();
        let last = client.handle_server_first(&first).unwrap();
        server.handle_client_final(&last).unwrap();
        let forged = format!("v={}", b64_encode(&[0u8; 32]));
        assert!(client.verify_server_final(forged.as_bytes()).is_err());
    }
}
