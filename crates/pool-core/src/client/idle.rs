//! The wait of an idle client: the state every connected-but-quiet client keeps in memory, so
//! it is kept small (`benches/compare.sh` measures the memory per idle client).
//!
//! On plain TCP the wait is a readiness poll of the socket (the waker lives in tokio's socket
//! registration, not in this future), a shutdown watch, and a boxed timer only when
//! `client_idle_timeout` is on. TLS clients, whose records must be read to know whether a
//! message arrived, wait in a read instead.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::server::buffers::READ_CHUNK;
use crate::stream::{read_ready, Stream};

/// Why an idle client's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Woke {
    /// Bytes arrived (appended to the buffer).
    Bytes,
    /// The client closed the connection or it broke.
    Gone,
    /// `client_idle_timeout` passed.
    IdleTimeout,
    /// pgtide is shutting down.
    Shutdown,
}

/// Waits until `client` sends bytes (appended to `buf`, which holds no allocation until then),
/// leaves, stays quiet for `idle_limit`, or `shutdown` changes.
pub(super) async fn wait_idle(
    client: &mut Stream,
    buf: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
    idle_limit: Option<Duration>,
) -> Woke {
    let mut timer: Option<Pin<Box<Sleep>>> = idle_limit.map(|t| Box::pin(tokio::time::sleep(t)));
    let changed = shutdown.changed();
    tokio::pin!(changed);
    loop {
        let woke = match &mut *client {
            Stream::Plain(s) => {
                poll_fn(|cx| {
                    if let Poll::Ready(r) = s.poll_read_ready(cx) {
                        return Poll::Ready(if r.is_ok() { None } else { Some(Woke::Gone) });
                    }
                    if let Some(t) = timer.as_mut() {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Some(Woke::IdleTimeout));
                        }
                    }
                    if changed.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Woke::Shutdown));
                    }
                    Poll::Pending
                })
                .await
            }
            // Boxed: TLS clients are few and heavy anyway; their wait stays out of every plain
            // client's task.
            tls => return Box::pin(wait_tls(tls, buf, timer, changed)).await,
        };
        if let Some(woke) = woke {
            return woke;
        }
        // The socket is readable: read what arrived (nothing if the readiness was spurious).
        if let Stream::Plain(s) = client {
            match read_ready(s, buf) {
                Ok(Some(0)) | Err(_) => return Woke::Gone,
                Ok(Some(_)) => return Woke::Bytes,
                Ok(None) => continue,
            }
        }
    }
}

/// [`wait_idle`] for a TLS client: a read, since only decrypting tells whether a message came.
async fn wait_tls(
    tls: &mut Stream,
    buf: &mut BytesMut,
    mut timer: Option<Pin<Box<Sleep>>>,
    changed: Pin<&mut impl Future<Output = Result<(), watch::error::RecvError>>>,
) -> Woke {
    let sleep = async {
        match timer.as_mut() {
            Some(t) => t.await,
            None => std::future::pending().await,
        }
    };
    buf.reserve(READ_CHUNK);
    tokio::select! {
        r = tls.read_buf(buf) => match r {
            Ok(0) | Err(_) => Woke::Gone,
            Ok(_) => Woke::Bytes,
        },
        _ = sleep => Woke::IdleTimeout,
        _ = changed => Woke::Shutdown,
    }
}
