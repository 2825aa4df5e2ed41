//! Errors pgtide itself sends to clients.

use bytes::BytesMut;
use pgtide_protocol::{encode, Severity, SqlState};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Sends a FATAL ErrorResponse (the connection is closed after it). Write errors are ignored:
/// the client may already be gone, and there is nobody left to tell.
pub async fn fatal<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: SqlState,
    message: &str,
    hint: Option<&str>,
) {
    let mut out = BytesMut::with_capacity(128 + message.len());
    encode::error_response(&mut out, Severity::Fatal, code, message, None, hint);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
}
