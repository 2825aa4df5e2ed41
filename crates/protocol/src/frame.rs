//! Framing of regular messages: one type byte, then a big-endian `i32` length that counts itself
//! and the body but not the type byte.
//!
//! This is the pooler's hot path: most messages are never decoded, only delimited and forwarded.
//! [`frame_header`] looks at five bytes and allocates nothing; [`Frames`] walks a whole read
//! buffer so complete messages can be inspected in one pass and forwarded with one write.
//! Oversized lengths are rejected from the header alone, before anything is buffered.

use bytes::BytesMut;

use crate::error::ProtocolError;

/// Size of the type byte plus the length word.
pub const HEADER_LEN: usize = 5;

/// Largest message PostgreSQL itself accepts from a client (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB - 2)
/// plus the type byte; a sensible `max_len` for client→server traffic.
pub const MAX_MESSAGE_LEN: usize = 0x3fff_fffe + 1;

/// Largest frame the length word can express (`i32::MAX` plus the type byte). Server→client
/// messages can legitimately exceed [`MAX_MESSAGE_LEN`] (a DataRow of several large columns),
/// so that direction should be limited by this, and such frames streamed rather than buffered.
pub const MAX_FRAME_LEN: usize = i32::MAX as usize + 1;

/// A bound for messages exchanged during authentication, where nothing legitimate is large
/// (PostgreSQL's `PG_MAX_AUTH_TOKEN_LENGTH` is 65535); applying it stops an unauthenticated peer
/// from making the pooler buffer big messages.
pub const MAX_AUTH_MESSAGE_LEN: usize = 65_535 + HEADER_LEN;

/// Where the next message starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type byte.
    pub tag: u8,
    /// Total bytes of the message, including the type byte and the length word.
    pub len: usize,
}

impl FrameHeader {
    /// Bytes of body (after the length word).
    pub fn body_len(&self) -> usize {
        self.len - HEADER_LEN
    }
}

/// Reads the header of the message at the start of `buf`.
///
/// Returns `Ok(None)` while fewer than [`HEADER_LEN`] bytes are available; the message itself may
/// still be incomplete when `Some` is returned (compare `len` with `buf.len()`), which lets a
/// caller stream a large message through without buffering it whole.
///
/// # Errors
/// [`ProtocolError::InvalidFrameLength`] when the length word is below 4, and
/// [`ProtocolError::Oversized`] when the total size exceeds `max_len`.
#[inline]
pub fn frame_header(buf: &[u8], max_len: usize) -> Result<Option<FrameHeader>, ProtocolError> {
    let Some(&[tag, a, b, c, d]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([a, b, c, d]);
    if declared < 4 {
        return Err(ProtocolError::InvalidFrameLength { tag, len: declared });
    }
    // Cannot overflow: declared <= i32::MAX.
    let len = declared as usize + 1;
    if len > max_len {
        return Err(ProtocolError::Oversized {
            tag: Some(tag),
            len,
            max: max_len,
        });
    }
    Ok(Some(FrameHeader { tag, len }))
}

/// One complete message borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Message type byte.
    pub tag: u8,
    /// The body, after the length word; what the decoders take.
    pub body: &'a [u8],
    /// The whole message including type byte and length, ready to forward.
    pub bytes: &'a [u8],
}

/// Iterator over the complete messages at the start of a buffer.
///
/// Stops at the first incomplete message; [`Frames::consumed`] then tells how many bytes the
/// yielded messages cover (forward `&buf[..consumed]` in one write) and [`Frames::remainder`]
/// what must wait for more input. After an error it yields nothing more: the stream cannot be
/// re-synchronised.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    consumed: usize,
    max_len: usize,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Iterates over `buf`, rejecting any message larger than `max_len` bytes in total.
    pub fn new(buf: &'a [u8], max_len: usize) -> Self {
        Frames {
            buf,
            consumed: 0,
            max_len,
            failed: false,
        }
    }

    /// Bytes of `buf` covered by the messages yielded so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The bytes after the messages yielded so far (an incomplete message, or nothing).
    pub fn remainder(&self) -> &'a [u8] {
        &self.buf[self.consumed..]
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, ProtocolError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.remainder();
        match frame_header(rest, self.max_len) {
            Ok(Some(h)) => {
                let bytes = rest.get(..h.len)?;
                self.consumed += h.len;
                Some(Ok(Frame {
                    tag: h.tag,
                    body: &bytes[HEADER_LEN..],
                    bytes,
                }))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Frames<'_> {}

/// Splits the first complete message off `buf` as an owned buffer (type byte and length
/// included), for messages the pooler must keep, e.g. a Parse to replay on another server.
///
/// Returns `Ok(None)` and leaves `buf` untouched while the message is incomplete.
///
/// # Errors
/// As [`frame_header`]; `buf` is left untouched.
pub fn take_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>, ProtocolError> {
    match frame_header(buf, max_len)? {
        Some(h) if buf.len() >= h.len => Ok(Some(buf.split_to(h.len))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(frame_header(b"Q\0\0\0", 100), Ok(None));
        assert_eq!(
            frame_header(b"Q\0\0\0\x09SEL", 100),
            Ok(Some(FrameHeader { tag: b'Q', len: 10 }))
        );
    }

    #[test]
    fn header_rejects_short_and_oversized() {
        assert_eq!(
            frame_header(b"Q\0\0\0\x03", 100),
            Err(ProtocolError::InvalidFrameLength { tag: b'Q', len: 3 })
        );
        assert_eq!(
            frame_header(b"Q\xff\xff\xff\xff", 100),
            Err(ProtocolError::InvalidFrameLength { tag: b'Q', len: -1 })
        );
        assert_eq!(
            frame_header(b"D\0\0\0\x64", 100),
            Err(ProtocolError::Oversized {
                tag: Some(b'D'),
                len: 101,
                max: 100
            })
        );
        // The largest length word: rejected from the header alone.
        assert!(matches!(
            frame_header(b"D\x7f\xff\xff\xff", MAX_MESSAGE_LEN),
            Err(ProtocolError::Oversized { .. })
        ));
        assert_eq!(
            frame_header(b"S\0\0\0\x04", 5),
            Ok(Some(FrameHeader { tag: b'S', len: 5 }))
        );
    }

    #[test]
    fn frames_walks_complete_messages() {
        // Sync, Query "SELECT 1", then half of a ReadyForQuery.
        let buf = b"S\0\0\0\x04Q\0\0\0\x0dSELECT 1\0Z\0\0";
        let mut it = Frames::new(buf, 1024);
        let f = it.next().unwrap().unwrap();
        assert_eq!((f.tag, f.body, f.bytes), (b'S', &b""[..], &buf[..5]));
        let f = it.next().unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body, b"SELECT 1\0");
        assert_eq!(f.bytes.len(), 14);
        assert!(it.next().is_none());
        assert_eq!(it.consumed(), 19);
        assert_eq!(it.remainder(), b"Z\0\0");
    }

    #[test]
    fn frames_stops_after_error() {
        let buf = b"S\0\0\0\x04S\0\0\0\x01S\0\0\0\x04";
        let mut it = Frames::new(buf, 1024);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        assert_eq!(it.consumed(), 5);
    }

    #[test]
    fn take_frame_splits_owned() {
        let mut buf = BytesMut::from(&b"S\0\0\0\x04X\0\0"[..]);
        let f = take_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&f[..], b"S\0\0\0\x04");
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        assert_eq!(&buf[..], b"X\0\0");
    }
}
