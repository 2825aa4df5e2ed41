//! Cancel requests. Every client gets its own random BackendKeyData from pgtide; a
//! CancelRequest carrying it is forwarded, with the server's own key, to the server that client
//! is using at that moment — and to nobody when it has none (a cancel never hits another
//! client's query on a reused connection). A client still queued for a server has its wait
//! aborted instead: it gets 57014 at once and its query is never sent.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use pgtide_protocol::encode;
use pgtide_protocol::startup::CancelKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::pool::lock;

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
}

impl CancelSlot {
    /// Points the slot at a server (on checkout) or at nothing (on release).
    pub fn set(&self, target: Option<(SocketAddr, CancelKey)>) {
        *lock(&self.server) = target;
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
