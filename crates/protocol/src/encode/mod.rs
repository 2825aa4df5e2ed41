//! Encoders: each appends one complete message to a `BytesMut`.
//!
//! Split by direction from the pooler's point of view: [`to_client`] holds the backend messages
//! pgtide writes to clients (errors, authentication, ReadyForQuery, ...), [`to_server`] the
//! frontend messages it writes to servers (startup, authentication replies, queries, prepared
//! statement re-creation). Both are re-exported here, so callers write `encode::query(..)`.
//!
//! Every encoder reserves space, writes a placeholder length, writes the body and patches the
//! length, so a message is never written with a wrong length. Strings are written up to their
//! first NUL byte: a NUL inside a string would otherwise end the field early and desynchronise
//! the peer.

use bytes::{BufMut, BytesMut};

pub mod to_client;
pub mod to_server;

pub use to_client::*;
pub use to_server::*;

/// Writes a regular message: `tag`, a length patched after `body` has written the rest.
///
/// # Panics
/// If the message exceeds `i32::MAX` bytes, which no encoder here can produce from sane input.
#[inline]
pub(crate) fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    untagged(buf, body);
}

/// Writes a length-prefixed packet without a type byte (startup phase).
#[inline]
pub(crate) fn untagged(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = i32::try_from(buf.len() - start).expect("message longer than i32::MAX bytes");
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes `s` up to its first NUL, then a NUL.
#[inline]
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    buf.put_slice(&s[..end]);
    buf.put_u8(0);
}

/// Writes a `i32` length then `data`.
#[inline]
pub(crate) fn put_bytes_with_len(buf: &mut BytesMut, data: &[u8]) {
    let len = i32::try_from(data.len()).expect("field longer than i32::MAX bytes");
    buf.put_i32(len);
    buf.put_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_patched() {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        message(&mut buf, b'Q', |b| put_cstr(b, b"SELECT 1"));
        assert_eq!(&buf[..], b"prefixQ\0\0\0\x0dSELECT 1\0");
    }

    #[test]
    fn cstr_stops_at_nul() {
        let mut buf = BytesMut::new();
        put_cstr(&mut buf, b"ab\0cd");
        assert_eq!(&buf[..], b"ab\0");
    }
}
