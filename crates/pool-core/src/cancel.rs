//! Cancel requests. Every client gets its own random BackendKeyData from pgtide; a
//! CancelRequest carrying it is forwarded, with the server's own key, to the server that client
//! is using at that moment — and to nobody when it has none (a cancel never hits another
//! client's query on a reused connection).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use pgtide_protocol::encode;
use pgtide_protocol::startup::CancelKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pool::lock;

/// Where a client's cancel should go right now.
#[derive(Debug, Default)]
pub struct CancelSlot(Mutex<Option<(SocketAddr, CancelKey)>>);

impl CancelSlot {
    /// Points the slot at a server (on checkout) or at nothing (on release).
    pub fn set(&self, target: Option<(SocketAddr, CancelKey)>) {
        *lock(&self.0) = target;
    }

    fn get(&self) -> Option<(SocketAddr, CancelKey)> {
        *lock(&self.0)
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

    /// Forwards a client's CancelRequest; returns whether a server was asked to cancel.
    pub async fn cancel(&self, key: CancelKey) -> bool {
        let target = lock(&self.slots)
            .get(&(key.process_id, key.secret_key))
            .and_then(|slot| slot.get());
        let Some((addr, server_key)) = target else {
            tracing::debug!("cancel request for no running query; ignored");
            return false;
        };
        send_cancel(addr, server_key).await
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
