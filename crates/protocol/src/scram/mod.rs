//! SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL implements it.
//!
//! - [`secret`]: the stored verifier, `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
//! - [`server`]: authenticates clients against a stored secret.
//! - [`client`]: authenticates pgtide to a server with a password.
//!
//! Both sides are pure state machines over byte slices: the caller moves the data in and out of
//! SASL messages and supplies the randomness, which keeps them testable with fixed vectors.
//! No channel binding on the server side: pgtide advertises only `SCRAM-SHA-256`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub mod client;
pub mod secret;
pub mod server;

pub use client::{ScramClient, ScramKeys};
pub use secret::ScramSecret;
pub use server::ScramServer;

/// The SASL mechanism name pgtide offers to clients.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The channel-binding variant (offered by servers over TLS; pgtide can use it as a client).
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// `HMAC-SHA-256(key, parts...)`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `SHA-256(data)`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `Hi()` of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block.
pub(crate) fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut prev = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = prev;
    for _ in 1..iterations {
        prev = hmac(password, &[&prev]);
        for (o, p) in out.iter_mut().zip(prev) {
            *o ^= p;
        }
    }
    out
}

/// Equality whose running time does not depend on where the inputs differ, for comparing
/// proofs and password hashes. (Lengths are not secret here.)
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

pub(crate) fn b64_decode(data: &str) -> Option<Vec<u8>> {
    STANDARD.decode(data).ok()
}

/// Characters allowed in a nonce: printable ASCII except `,` (RFC 5802 `printable`).
pub(crate) fn is_printable_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `attr=value` and checks the attribute letter.
pub(crate) fn attribute(part: Option<&str>, name: char) -> Option<&str> {
    let part = part?;
    let mut chars = part.chars();
    (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64), first block.
        let out = hi(b"passwd", b"salt", 1);
        assert_eq!(out[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
        // ("Password", "NaCl", 80000) is slow; 4096 iterations against a known value instead:
        // PBKDF2-HMAC-SHA256("password", "salt", 4096) starts c5e478d5.
        assert_eq!(
            hi(b"password", b"salt", 4096)[..4],
            [0xc5, 0xe4, 0x78, 0xd5]
        );
    }

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn attributes_and_nonces() {
        assert_eq!(attribute(Some("r=abc"), 'r'), Some("abc"));
        assert_eq!(attribute(Some("r=abc"), 's'), None);
        assert_eq!(attribute(Some("r"), 'r'), None);
        assert_eq!(attribute(None, 'r'), None);
        assert!(is_printable_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
        assert!(!is_printable_nonce("a,b"));
        assert!(!is_printable_nonce("a b"));
        assert!(!is_printable_nonce(""));
    }
}
