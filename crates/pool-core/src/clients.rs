//! The registry of connected clients, for operators: who is connected, to which pool, since
//! when, and what each is doing right now (read from its cancel slot, which the session already
//! keeps current: bound to a server, queued for one, or idle). Entries are added at login and
//! removed when the session ends; the hot path never touches the registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::cancel::CancelSlot;
use crate::sync::lock;

/// What is known of a client at login.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Its address.
    pub addr: SocketAddr,
    /// Database it connected to (the pool's database).
    pub database: String,
    /// User it logged in as.
    pub user: String,
    /// When it logged in (wall clock, for operators).
    pub since: SystemTime,
}

#[derive(Debug)]
struct Entry {
    info: ClientInfo,
    slot: Arc<CancelSlot>,
}

/// All connected (logged-in) clients.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next: AtomicU64,
    entries: Mutex<BTreeMap<u64, Entry>>,
}

/// A client's place in the registry; dropping it (when the session ends) removes the entry.
#[derive(Debug)]
pub struct Listing {
    registry: Arc<ClientRegistry>,
    id: u64,
}

impl Listing {
    /// The client's id (stable for its session, unique in the process).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        lock(&self.registry.entries).remove(&self.id);
    }
}

/// What a client is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Between transactions (no server).
    Idle,
    /// Queued for a server.
    Waiting,
    /// Bound to a server (inside a transaction, or for the session in session mode).
    Active {
        /// The server's address.
        server: SocketAddr,
        /// The server's backend process id.
        backend_pid: i32,
    },
}

/// One client, as an operator sees it.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// Its id.
    pub id: u64,
    /// What it logged in with.
    pub info: ClientInfo,
    /// What it does now.
    pub state: ClientState,
}

impl ClientRegistry {
    /// Lists a client that just logged in; its `slot` tells its state.
    pub fn register(self: &Arc<Self>, info: ClientInfo, slot: Arc<CancelSlot>) -> Listing {
        let id = self.next.fetch_add(1, Relaxed) + 1;
        lock(&self.entries).insert(id, Entry { info, slot });
        Listing {
            registry: self.clone(),
            id,
        }
    }

    /// Every connected client, by id.
    pub fn list(&self) -> Vec<ClientView> {
        lock(&self.entries)
            .iter()
            .map(|(id, e)| ClientView {
                id: *id,
                info: e.info.clone(),
                state: match e.slot.server() {
                    Some((server, key)) => ClientState::Active {
                        server,
                        backend_pid: key.process_id,
                    },
                    None if e.slot.is_waiting() => ClientState::Waiting,
                    None => ClientState::Idle,
                },
            })
            .collect()
    }

    /// Clients listed now.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// True when no client is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtide_protocol::startup::CancelKey;

    #[test]
    fn clients_are_listed_with_their_state_until_their_session_ends() {
        let registry = Arc::new(ClientRegistry::default());
        let slot = Arc::new(CancelSlot::default());
        let info = ClientInfo {
            addr: "127.0.0.1:5000".parse().unwrap(),
            database: "app".into(),
            user: "u".into(),
            since: SystemTime::now(),
        };
        let listing = registry.register(info, slot.clone());
        assert_eq!(registry.list()[0].state, ClientState::Idle);
        let server = "127.0.0.1:5432".parse().unwrap();
        slot.set(Some((
            server,
            CancelKey {
                process_id: 42,
                secret_key: 1,
            },
        )));
        assert_eq!(
            registry.list()[0].state,
            ClientState::Active {
                server,
                backend_pid: 42
            }
        );
        assert_eq!(registry.list()[0].id, listing.id());
        drop(listing);
        assert!(registry.is_empty());
    }
}
