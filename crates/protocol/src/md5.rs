//! md5 password authentication, both sides.
//!
//! PostgreSQL stores `"md5" + hex(md5(password ++ user))` and, for a salt, expects the client
//! to send `"md5" + hex(md5(hex_part ++ salt))`. Knowing the stored hash is therefore enough to
//! authenticate (a weakness of the method, and why SCRAM is the default), which is also what
//! lets pgtide log in to a server with an md5 secret from its auth file.

use md5::{Digest, Md5};

use crate::scram::constant_time_eq;

/// Length of a stored md5 secret: `"md5"` plus 32 hex digits.
const MD5_SECRET_LEN: usize = 35;

/// The stored form of a password: `"md5" + hex(md5(password ++ user))`.
pub fn md5_hash(user: &str, password: &str) -> String {
    prefixed_hex(&[password.as_bytes(), user.as_bytes()])
}

/// Whether `secret` has the shape of a stored md5 hash, the same test PostgreSQL applies.
pub fn is_md5_secret(secret: &str) -> bool {
    secret.len() == MD5_SECRET_LEN
        && secret.starts_with("md5")
        && secret[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The response a client sends for `salt`, from either the plain password or the stored
/// `"md5…"` hash (recognised by [`is_md5_secret`]).
pub fn md5_response(user: &str, password_or_secret: &str, salt: [u8; 4]) -> String {
    let stored;
    let secret = if is_md5_secret(password_or_secret) {
        password_or_secret
    } else {
        stored = md5_hash(user, password_or_secret);
        &stored
    };
    prefixed_hex(&[&secret.as_bytes()[3..], &salt])
}

/// Server side: whether `response` (from the client's PasswordMessage) matches the expected
/// response for `salt`, given the plain password or the stored `"md5…"` hash. Compares in
/// constant time.
pub fn md5_verify(user: &str, password_or_secret: &str, salt: [u8; 4], response: &str) -> bool {
    let expected = md5_response(user, password_or_secret, salt);
    constant_time_eq(expected.as_bytes(), response.as_bytes())
}

fn prefixed_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(MD5_SECRET_LEN);
    out.push_str("md5");
    for b in digest.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hash() {
        // SELECT 'md5' || md5('pencil' || 'user');
        assert_eq!(
            md5_hash("user", "pencil"),
            "md520c46e3762c864548e296b33c3406aa9"
        );
        // md5('') is d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(md5_hash("", ""), "md5d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn response_from_password_or_secret() {
        let salt = [0x01, 0x02, 0x03, 0x04];
        let secret = md5_hash("app", "s3cret");
        let from_password = md5_response("app", "s3cret", salt);
        assert_eq!(from_password, md5_response("app", &secret, salt));
        assert!(is_md5_secret(&from_password));
        assert_ne!(from_password, md5_response("app", "s3cret", [0, 0, 0, 0]));
    }

    #[test]
    fn matches_postgres_protocol() {
        let salt = [0xde, 0xad, 0xbe, 0xef];
        assert_eq!(
            md5_response("bob", "hunter2", salt),
            postgres_protocol::authentication::md5_hash(b"bob", b"hunter2", salt)
        );
        assert_eq!(
            md5_hash("bob", "hunter2"),
            postgres_protocol::password::md5(b"hunter2", "bob")
        );
    }

    #[test]
    fn verify() {
        let salt = [5, 6, 7, 8];
        let response = md5_response("u", "pw", salt);
        assert!(md5_verify("u", "pw", salt, &response));
        assert!(md5_verify("u", &md5_hash("u", "pw"), salt, &response));
        assert!(!md5_verify("u", "pw2", salt, &response));
        assert!(!md5_verify("v", "pw", salt, &response));
        assert!(!md5_verify("u", "pw", salt, ""));
    }

    #[test]
    fn secret_shape() {
        assert!(!is_md5_secret("md5"));
        assert!(!is_md5_secret("md5zz1bdb3ec48e2d0ec2ef1a2c85d4e6e8"));
        assert!(!is_md5_secret("MD5ab1bdb3ec48e2d0ec2ef1a2c85d4e6e8"));
    }
}
