//! Reading whole frames during the short startup/auth phases (the hot path streams instead).

use std::io;

use bytes::BytesMut;
use pgtide_protocol::{take_frame, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a whole frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The socket failed or closed (`UnexpectedEof`).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Reads one complete frame (tag + length + body) from `stream`, buffering in `buf`.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<BytesMut, ReadFrameError> {
    loop {
        if let Some(frame) = take_frame(buf, max_len)? {
            return Ok(frame);
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
}
