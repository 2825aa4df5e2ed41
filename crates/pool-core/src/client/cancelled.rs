//! A client whose CancelRequest arrives while it is still queued for a server.
//!
//! PostgreSQL answers a cancelled statement with `57014 canceling statement due to user
//! request`; a client queued in pgtide has had nothing sent to a server yet, so pgtide answers
//! for the server: the first sync point the client sent (a Query, or extended-protocol messages
//! up to their Sync) gets that error and ReadyForQuery, exactly what the server would have
//! sent had it cancelled the statement before running it, and is never forwarded. Anything the
//! client pipelined after it waits for a server as usual.

use bytes::{Buf, BytesMut};
use pgtide_protocol::frame::Frames;
use pgtide_protocol::{encode, tag, Severity, SqlState, TransactionStatus};
use tokio::io::AsyncWriteExt;

use super::session::Session;

/// PostgreSQL's own text for a statement cancelled by the client.
const CANCELED_BY_USER: &str = "canceling statement due to user request";

/// The end of the first sync point in `buf` (the byte after its Query, Sync or FunctionCall),
/// or `None` when `buf` does not start with a complete one that can be answered for the server
/// (an incomplete frame, a Flush-only exchange, a Terminate first, COPY data).
pub(super) fn first_sync_point_end(buf: &[u8]) -> Option<usize> {
    let mut frames = Frames::new(buf, usize::MAX);
    for frame in frames.by_ref() {
        let frame = frame.ok()?;
        match frame.tag {
            tag::frontend::QUERY | tag::frontend::SYNC | tag::frontend::FUNCTION_CALL => {
                return Some(frames.consumed());
            }
            tag::frontend::PARSE
            | tag::frontend::BIND
            | tag::frontend::DESCRIBE
            | tag::frontend::EXECUTE
            | tag::frontend::CLOSE
            | tag::frontend::FLUSH => {}
            _ => return None,
        }
    }
    None
}

impl Session {
    /// Answers the first `end` bytes of `cbuf` (one sync point) as a cancelled statement and
    /// drops them; returns the rest, which still needs a server, or `None` when the client is
    /// gone.
    pub(super) async fn answer_cancelled(
        &mut self,
        mut cbuf: BytesMut,
        end: usize,
    ) -> Option<BytesMut> {
        tracing::debug!(pool = %self.pool.name(), client = %self.peer, "cancel request aborted a wait for a server");
        let mut out = BytesMut::with_capacity(128);
        encode::error_response(
            &mut out,
            Severity::Error,
            SqlState::QUERY_CANCELED,
            CANCELED_BY_USER,
            None,
            None,
        );
        encode::ready_for_query(&mut out, TransactionStatus::Idle);
        self.client.write_all(&out).await.ok()?;
        cbuf.advance(end);
        Some(cbuf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_simple_query_is_one_sync_point() {
        let q = msg(b'Q', b"select 1\0");
        let mut buf = q.clone();
        buf.extend(msg(b'Q', b"select 2\0"));
        assert_eq!(first_sync_point_end(&buf), Some(q.len()));
    }

    #[test]
    fn extended_messages_end_at_their_sync() {
        let mut buf = msg(b'P', b"\0select 1\0\0\0");
        buf.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
        buf.extend(msg(b'E', b"\0\0\0\0\0"));
        let before_sync = buf.len();
        buf.extend(msg(b'S', b""));
        assert_eq!(first_sync_point_end(&buf), Some(before_sync + 5));
        assert_eq!(
            first_sync_point_end(&buf[..before_sync]),
            None,
            "no Sync yet"
        );
        assert_eq!(
            first_sync_point_end(&buf[..before_sync + 3]),
            None,
            "Sync incomplete"
        );
    }

    #[test]
    fn what_cannot_be_answered_for_the_server_is_not() {
        assert_eq!(first_sync_point_end(&msg(b'X', b"")), None);
        assert_eq!(first_sync_point_end(&msg(b'd', b"1\t2\n")), None);
        assert_eq!(first_sync_point_end(&[]), None);
    }
}
