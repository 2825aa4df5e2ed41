//! Cancel requests. Every client gets its own random BackendKeyData from pgtide; a
//! CancelRequest carrying it is forwarded, with the server's own key, to the server that client
//! is using at that moment — and to nobody when it has none (a cancel never hits another
//! client's query on a reused connection). A client still queued for a server has its wait
//! aborted instead: it gets 57014 at once and its query is never sent.
//!
//! A forwarded cancel is also counted in the client's [`CancelSlot`], so that its session can
//! tell the 57014 the client asked for from the server's own statement_timeout, without
//! reading the error's (localized) text.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use pgtide_protocol::encode;
use pgtide_protocol::startup::CancelKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::sync::lock;

/// Where a client's cancel should go right now: the server it is bound to, or its own wait
/// for one.
#[derive(Debug, Default)]
pub struct CancelSlot {
    server: Mutex<Option<(SocketAddr, CancelKey)>>,
    /// The client is queued for a server ([`CancelSlot::unless_cancelled`] is running).
    waiting: AtomicBool,
    /// A cancel arrived during the current wait.
    cancelled: AtomicBool,
    /// Wakes the wait when a cancel arrives.
    wake: Notify,
    /// CancelRequests forwarded to the client's server whose 57014 the session has not seen
    /// yet ([`CancelSlot::take_forwarded`]). Counted before the request is sent: the server
    /// may answer the client before the cancel connection is closed.
    forwarded: AtomicU32,
}

impl CancelSlot {
    /// Points the slot at a server (on checkout) or at nothing (on release).
    /// A new target starts with no forwarded cancel outstanding.
    pub fn set(&self, target: Option<(SocketAddr, CancelKey)>) {
        *lock(&self.server) = target;
        self.clear_forwarded();
    }

    /// The session saw a 57014: whether a cancel the client sent through pgtide explains it
    /// (and if so, that cancel is used up).
    pub fn take_forwarded(&self) -> bool {
        self.forwarded
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Forgets forwarded cancels that found nothing to cancel (the statement ended first, or
    /// none was running). The session calls it when every sync point has been answered; one
    /// relaxed load unless a cancel is outstanding.
    pub fn clear_forwarded(&self) {
        if self.forwarded.load(Relaxed) != 0 {
            self.forwarded.store(0, Relaxed);
        }
    }

    fn get(&self) -> Option<(SocketAddr, CancelKey)> {
        *lock(&self.server)
    }

    /// The server the client is bound to now, if any (for the client list).
    pub fn server(&self) -> Option<(SocketAddr, CancelKey)> {
        self.get()
    }

    /// Whether the client is queued for a server now.
    pub fn is_waiting(&self) -> bool {
        self.waiting.load(SeqCst)
    }

    /// Runs `wait` (the client's wait for a server) unless a CancelRequest for this client
    /// arrives first: then `wait` is dropped and `None` returned. `wait` must be safe to drop
    /// at any await point (the pool's acquire is).
    pub async fn unless_cancelled<F: Future>(&self, wait: F) -> Option<F::Output> {
        self.cancelled.store(false, SeqCst);
        self.waiting.store(true, SeqCst);
        let woken = self.wake.notified();
        tokio::pin!(woken);
        // Registered before the flag is read: a cancel that lands between the two is seen
        // either by the flag or by the wake-up.
        woken.as_mut().enable();
        let outcome = if self.cancelled.load(SeqCst) {
            None
        } else {
            tokio::select! {
                biased;
                _ = woken => None,
                r = wait => Some(r),
            }
        };
        self.waiting.store(false, SeqCst);
        outcome
    }

    /// Aborts the client's wait for a server, if it is waiting; returns whether it was.
    fn cancel_wait(&self) -> bool {
        if !self.waiting.load(SeqCst) {
            return false;
        }
        self.cancelled.store(true, SeqCst);
        self.wake.notify_waiters();
        true
    }
}

/// All live clients' cancel keys.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    slots: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
}

/// Removes a client's key when its session ends.
#[derive(Debug)]
pub struct CancelRegistration {
    registry: Arc<CancelRegistry>,
    key: CancelKey,
    /// The client's slot.
    pub slot: Arc<CancelSlot>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        lock(&self.registry.slots).remove(&(self.key.process_id, self.key.secret_key));
    }
}

impl CancelRegistration {
    /// The key to send the client in BackendKeyData.
    pub fn key(&self) -> CancelKey {
        self.key
    }
}

impl CancelRegistry {
    /// Issues a fresh random key for a new client.
    pub fn register(self: &Arc<Self>) -> CancelRegistration {
        let slot = Arc::new(CancelSlot::default());
        let mut slots = lock(&self.slots);
        let key = loop {
            let key = CancelKey {
                process_id: rand::random::<i32>() & 0x7fff_ffff,
                secret_key: rand::random(),
            };
            if !slots.contains_key(&(key.process_id, key.secret_key)) {
                break key;
            }
        };
        slots.insert((key.process_id, key.secret_key), slot.clone());
        CancelRegistration {
            registry: self.clone(),
            key,
            slot,
        }
    }

    /// Serves a client's CancelRequest: forwarded to the server the client is bound to, or,
    /// when the client is queued for a server, its wait is aborted (its query never reaches a
    /// server). Returns whether anything was cancelled.
    pub async fn cancel(&self, key: CancelKey) -> bool {
        let Some(slot) = lock(&self.slots)
            .get(&(key.process_id, key.secret_key))
            .cloned()
        else {
            tracing::debug!("cancel request with an unknown key; ignored");
            return false;
        };
        if let Some((addr, server_key)) = slot.get() {
            slot.forwarded.fetch_add(1, Relaxed);
            return send_cancel(addr, server_key).await;
        }
        if slot.cancel_wait() {
            return true;
        }
        tracing::debug!("cancel request for no running query; ignored");
        false
    }
}

/// Sends a CancelRequest for `key` to the server at `addr` (pgtide's own query_timeout uses
/// this too); waits at most 5 s. Returns whether the server took it.
pub async fn send_cancel(addr: SocketAddr, key: CancelKey) -> bool {
    let send = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut out = BytesMut::with_capacity(16);
        encode::cancel_request(&mut out, key);
        stream.write_all(&out).await?;
        // The server closes the connection once it has processed the request.
        let mut sink = [0u8; 16];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(5), send).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(server = %addr, error = %e, "forwarding cancel request failed");
            false
        }
        Err(_) => {
            tracing::warn!(server = %addr, "forwarding cancel request timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A listener that takes cancel requests and closes each connection, as a server does.
    async fn cancel_sink() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 16];
                let _ = s.read_exact(&mut buf).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_forwarded_cancel_is_counted_once_for_the_session() {
        let registry = Arc::new(CancelRegistry::default());
        let reg = registry.register();
        let server_key = CancelKey {
            process_id: 7,
            secret_key: 8,
        };
        reg.slot.set(Some((cancel_sink().await, server_key)));
        assert!(!reg.slot.take_forwarded(), "nothing forwarded yet");
        assert!(registry.cancel(reg.key()).await);
        assert!(
            reg.slot.take_forwarded(),
            "the client's cancel explains one 57014"
        );
        assert!(!reg.slot.take_forwarded(), "and only one");
    }

    #[tokio::test]
    async fn stale_forwarded_cancels_are_forgotten() {
        let registry = Arc::new(CancelRegistry::default());
        let reg = registry.register();
        let target = (
            cancel_sink().await,
            CancelKey {
                process_id: 1,
                secret_key: 2,
            },
        );
        reg.slot.set(Some(target));
        assert!(registry.cancel(reg.key()).await);
        reg.slot.clear_forwarded();
        assert!(
            !reg.slot.take_forwarded(),
            "cleared when every sync point was answered"
        );
        assert!(registry.cancel(reg.key()).await);
        reg.slot.set(None);
        assert!(
            !reg.slot.take_forwarded(),
            "cleared when the server is released"
        );
    }

    #[tokio::test]
    async fn a_cancel_with_nowhere_to_go_counts_nothing() {
        let registry = Arc::new(CancelRegistry::default());
        let reg = registry.register();
        assert!(!registry.cancel(reg.key()).await, "no server, no wait");
        let unknown = CancelKey {
            process_id: reg.key().process_id ^ 1,
            secret_key: 0,
        };
        assert!(!registry.cancel(unknown).await);
        assert!(!reg.slot.take_forwarded());
    }
}
