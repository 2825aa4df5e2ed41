//! A connection that is plain TCP or TLS, on either side of the proxy.
//!
//! An enum rather than `Box<dyn AsyncRead + AsyncWrite>`: one branch per poll, no allocation,
//! and the plain case keeps access to the raw socket for the zero-buffer idle wait
//! ([`read_ready`]) and the liveness probe of idle servers.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::server::buffers::READ_CHUNK;

/// Plain TCP, TLS accepted from a client, or TLS opened to a server.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS terminated by pgtide (client side).
    Accepted(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS opened by pgtide (server side).
    Connected(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// An in-memory server of the pool's own tests (`pool/fake.rs`); not in the daemon.
    /// The flag is cleared when the fake kills that server.
    #[cfg(test)]
    Memory(
        Box<tokio::io::DuplexStream>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
    ),
}

impl Stream {
    /// True for either TLS variant.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Accepted(s) => s.get_ref().0,
            Stream::Connected(s) => s.get_ref().0,
            #[cfg(test)]
            Stream::Memory(..) => {
                unreachable!("memory streams stand in for servers, never clients")
            }
        }
    }

    /// An idle server should have said nothing: EOF or stray bytes mean it is gone or in an
    /// unknown state. One non-blocking read on plain TCP; TLS connections are not probed
    /// (reading under TLS would corrupt the record stream) and fail on first use instead.
    pub fn looks_alive(&self) -> bool {
        match self {
            Stream::Plain(s) => {
                let mut probe = [0u8; 1];
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            #[cfg(test)]
            Stream::Memory(_, alive) => alive.load(std::sync::atomic::Ordering::Relaxed),
            _ => true,
        }
    }

    /// Best-effort Terminate before closing, never blocking (plain TCP only).
    pub fn try_terminate(&self) {
        if let Stream::Plain(s) = self {
            let _ = s.try_write(b"X\0\0\0\x04");
        }
    }
}

/// One read from a socket that said it is readable, through stack scratch space, appended to
/// `buf`; `None` when the readiness was spurious. An idle client so holds no read buffer: only
/// the bytes that arrived are copied out. It goes through `poll_read`, not `try_read`, because a short read
/// there also clears the socket's readiness: the next read then waits for epoll instead of
/// first failing with EAGAIN (one wasted syscall per transaction otherwise).
pub(crate) fn read_ready(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    // Uninitialised: zeroing 16 KiB per read showed in profiles.
    let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut read = ReadBuf::uninit(&mut scratch);
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(s).poll_read(&mut cx, &mut read) {
        Poll::Ready(Ok(())) => {
            buf.extend_from_slice(read.filled());
            Ok(Some(read.filled().len()))
        }
        Poll::Ready(Err(e)) => Err(e),
        // Spurious readiness: the caller waits again (and registers its real waker then).
        Poll::Pending => Ok(None),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Accepted(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Connected(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(test)]
            Stream::Memory(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, data),
            Stream::Accepted(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            Stream::Connected(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            #[cfg(test)]
            Stream::Memory(s, _) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Accepted(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Connected(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(test)]
            Stream::Memory(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Accepted(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Connected(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(test)]
            Stream::Memory(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
