//! Free loopback ports.
//!
//! The kernel picks a free port when we bind to port 0; we read it and close the socket. That
//! leaves a window in which someone else can take the port, which is why
//! [`crate::ClusterBuilder::start`] retries on "address already in use". Within one process a
//! set of ports already handed out makes sure two callers (say a cluster and a pgtide listener
//! started by parallel tests) never get the same number, even if the kernel offers it twice.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports this process has handed out; never given out again.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that no other caller in this process
/// has received.
///
/// # Panics
/// If the loopback interface refuses to bind a thousand times in a row: nothing in a test can
/// work then.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the bound address: {e}"))
            .port();
        drop(listener);
        let mut set = handed_out().lock().unwrap_or_else(|p| p.into_inner());
        if set.insert(port) {
            return port;
        }
    }
    panic!("no fresh loopback port after 1000 attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_repeated_within_a_process() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|&p| p != 0));
    }
}
