//! The wait of an idle client: the state every connected-but-quiet client keeps in memory, so
//! it is kept small (`benches/compare.sh` measures the memory per idle client).
//!
//! On plain TCP the wait is a readiness poll of the socket (the waker lives in tokio's socket
//! registration, not in this future), the session's shutdown watcher, and one boxed timer: the
//! `client_idle_timeout` when it is on, else the session's reusable park timer. TLS clients,
//! whose records must be read to know whether a message arrived, wait in a read instead.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
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
    /// The client stayed quiet long enough to park its session (`client/park.rs`).
    Park,
}

/// Waits until `client` sends bytes (appended to `buf`, which holds no allocation until then),
/// leaves, `timer` fires (answered with the `Woke` paired with it: the client idle timeout, or
/// the moment to park the session), or `changed` resolves (pgtide is shutting down).
pub(super) async fn wait_idle(
    client: &mut Stream,
    buf: &mut BytesMut,
    mut changed: Pin<&mut (dyn Future<Output = ()> + Send)>,
    mut timer: Option<(&mut Pin<Box<Sleep>>, Woke)>,
) -> Woke {
    loop {
        let woke = match &mut *client {
            Stream::Plain(s) => {
                poll_fn(|cx| {
                    if let Poll::Ready(r) = s.poll_read_ready(cx) {
                        return Poll::Ready(if r.is_ok() { None } else { Some(Woke::Gone) });
                    }
                    if let Some((t, woke)) = timer.as_mut() {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Some(*woke));
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
            tls => return Box::pin(wait_tls(tls, buf, timer, changed.as_mut())).await,
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
    timer: Option<(&mut Pin<Box<Sleep>>, Woke)>,
    changed: Pin<&mut (dyn Future<Output = ()> + Send)>,
) -> Woke {
    let (mut sleep, on_timer) = match timer {
        Some((t, woke)) => (Some(t), woke),
        None => (None, Woke::IdleTimeout),
    };
    let sleep = async {
        match sleep.as_mut() {
            Some(t) => t.as_mut().await,
            None => std::future::pending().await,
        }
    };
    buf.reserve(READ_CHUNK);
    tokio::select! {
        r = tls.read_buf(buf) => match r {
            Ok(0) | Err(_) => Woke::Gone,
            Ok(_) => Woke::Bytes,
        },
        _ = sleep => on_timer,
        _ = changed => Woke::Shutdown,
    }
}
