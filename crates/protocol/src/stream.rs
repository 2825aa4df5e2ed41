//! Frame boundaries in a byte stream that arrives in arbitrary chunks.
//!
//! The pooler forwards each read chunk in one write and never waits for a whole message: a
//! 100 MB DataRow streams through in 16 KiB pieces. It still has to know where messages start
//! and end (to see ReadyForQuery, count Syncs, and release a server only at a message
//! boundary). [`StreamScanner`] keeps the few bytes of state needed across chunks and reports
//! each frame's tag as it completes; for the tags the caller names, it also hands over the body
//! — borrowed from the chunk when the frame is whole in it, copied into a small reused buffer
//! when it straddles two reads. No allocation happens in the steady state.

use crate::error::ProtocolError;
use crate::frame::HEADER_LEN;

/// Bodies of "interesting" frames larger than this are reported without a body: the pooler only
/// inspects small control messages (ReadyForQuery, ParameterStatus, ErrorResponse).
pub const MAX_CAPTURED_BODY: usize = 8 * 1024;

/// A frame completed by [`StreamScanner::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedFrame<'a> {
    /// Message type byte.
    pub tag: u8,
    /// The body, for tags the caller asked for and no larger than [`MAX_CAPTURED_BODY`].
    pub body: Option<&'a [u8]>,
    /// Offset just past this frame's last byte within the chunk being fed.
    pub end: usize,
    /// Total frame length (tag + length word + body).
    pub len: usize,
}

/// Incremental frame delimiter for one direction of one connection.
#[derive(Debug)]
pub struct StreamScanner {
    max_len: usize,
    head: [u8; HEADER_LEN],
    head_len: usize,
    tag: u8,
    frame_len: usize,
    body_left: usize,
    in_body: bool,
    capture: bool,
    partial: Vec<u8>,
}

impl StreamScanner {
    /// A scanner refusing frames longer than `max_len` bytes in total.
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            head: [0; HEADER_LEN],
            head_len: 0,
            tag: 0,
            frame_len: 0,
            body_left: 0,
            in_body: false,
            capture: false,
            partial: Vec::new(),
        }
    }

    /// True when no frame is partly seen: the stream may be cut here (a server handed to
    /// another client, a connection closed without leaving garbage behind).
    pub fn at_boundary(&self) -> bool {
        self.head_len == 0 && !self.in_body
    }

    /// The size limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Header bytes of a frame whose header is not complete yet (they ended the last chunk).
    /// A caller that may need to drop that frame holds these bytes back.
    pub fn partial_header_len(&self) -> usize {
        if self.in_body {
            0
        } else {
            self.head_len
        }
    }

    /// Changes the size limit (a live config change); frames already started are unaffected.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Scans `chunk`, calling `on_frame` for each frame that completes in it. `capture(tag)`
    /// says which bodies the caller wants. On error (a length below 4 or above the limit) the
    /// stream is unusable and the connection should be closed.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        capture: impl Fn(u8) -> bool,
        mut on_frame: impl FnMut(ScannedFrame<'_>),
    ) -> Result<(), ProtocolError> {
        let mut i = 0;
        while i < chunk.len() {
            if !self.in_body {
                let take = (HEADER_LEN - self.head_len).min(chunk.len() - i);
                self.head[self.head_len..self.head_len + take].copy_from_slice(&chunk[i..i + take]);
                self.head_len += take;
                i += take;
                if self.head_len < HEADER_LEN {
                    break;
                }
                self.head_len = 0;
                let tag = self.head[0];
                let declared =
                    i32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
                if declared < 4 {
                    return Err(ProtocolError::InvalidFrameLength { tag, len: declared });
                }
                let total = declared as usize + 1;
                if total > self.max_len {
                    return Err(ProtocolError::Oversized {
                        tag: Some(tag),
                        len: total,
                        max: self.max_len,
                    });
                }
                let body_len = total - HEADER_LEN;
                self.tag = tag;
                self.frame_len = total;
                self.capture = body_len <= MAX_CAPTURED_BODY && capture(tag);
                if chunk.len() - i >= body_len {
                    // Whole body in this chunk: no copy.
                    let body = &chunk[i..i + body_len];
                    i += body_len;
                    on_frame(ScannedFrame {
                        tag,
                        body: self.capture.then_some(body),
                        end: i,
                        len: total,
                    });
                    continue;
                }
                self.in_body = true;
                self.body_left = body_len;
                self.partial.clear();
            }
            let take = self.body_left.min(chunk.len() - i);
            if self.capture {
                self.partial.extend_from_slice(&chunk[i..i + take]);
            }
            i += take;
            self.body_left -= take;
            if self.body_left == 0 {
                self.in_body = false;
                on_frame(ScannedFrame {
                    tag: self.tag,
                    body: self.capture.then_some(&self.partial[..]),
                    end: i,
                    len: self.frame_len,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;
    use crate::TransactionStatus;
    use bytes::BytesMut;

    fn stream() -> BytesMut {
        let mut b = BytesMut::new();
        encode::parameter_status(&mut b, "TimeZone", "UTC");
        encode::command_complete(&mut b, "SELECT 1");
        encode::ready_for_query(&mut b, TransactionStatus::Idle);
        b
    }

    fn scan_in_pieces(data: &[u8], piece: usize) -> Vec<(u8, Option<Vec<u8>>)> {
        let mut s = StreamScanner::new(1 << 20);
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            s.feed(
                chunk,
                |t| t == b'Z' || t == b'S',
                |f| out.push((f.tag, f.body.map(<[u8]>::to_vec))),
            )
            .unwrap();
        }
        assert!(s.at_boundary());
        out
    }

    #[test]
    fn same_frames_whatever_the_chunking() {
        let data = stream();
        let whole = scan_in_pieces(&data, data.len());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0], (b'S', Some(b"TimeZone\0UTC\0".to_vec())));
        assert_eq!(whole[1], (b'C', None));
        assert_eq!(whole[2], (b'Z', Some(b"I".to_vec())));
        for piece in 1..data.len() {
            assert_eq!(scan_in_pieces(&data, piece), whole, "piece size {piece}");
        }
    }

    #[test]
    fn mid_frame_is_not_a_boundary() {
        let data = stream();
        let mut s = StreamScanner::new(1 << 20);
        s.feed(&data[..7], |_| false, |_| {}).unwrap();
        assert!(!s.at_boundary());
        s.feed(&data[7..], |_| false, |_| {}).unwrap();
        assert!(s.at_boundary());
    }

    #[test]
    fn end_offsets_point_past_each_frame() {
        let data = stream();
        let mut ends = Vec::new();
        StreamScanner::new(1 << 20)
            .feed(&data, |_| false, |f| ends.push(f.end))
            .unwrap();
        assert_eq!(*ends.last().unwrap(), data.len());
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused() {
        let mut s = StreamScanner::new(1024);
        let err = s.feed(&[b'Q', 0x7f, 0xff, 0xff, 0xff], |_| false, |_| {});
        assert!(matches!(err, Err(ProtocolError::Oversized { .. })));
        let mut s = StreamScanner::new(1024);
        let err = s.feed(&[b'Q', 0, 0, 0, 2], |_| false, |_| {});
        assert!(matches!(err, Err(ProtocolError::InvalidFrameLength { .. })));
    }
}
