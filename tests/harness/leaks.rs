//! The check every test gets when its pgtide stops: no server connection is left busy after its
//! client is gone.
//!
//! Two symptoms of a leak are looked for, each given a few seconds to clear (pgtide may still be
//! noticing a client that just left):
//! - a client socket the client has closed but pgtide still holds (`CLOSE_WAIT` on pgtide's
//!   listening port in `/proc/net/tcp`): the session behind it is stuck, and the server it holds
//!   with it — the way a Terminate during COPY used to leak a server for good;
//! - a server in a pool's idle list whose backend is not `idle` in `pg_stat_activity`: a server
//!   given back in a state no other client should see.
//!
//! A failed check panics with what it found (from `Drop`, unless the test already panics).

use std::time::{Duration, Instant};

use pgtide_pool_core::ProxyHandle;

/// How long a symptom may last before it is a leak.
const GRACE: Duration = Duration::from_secs(5);

/// What the check needs to know besides the proxy.
#[derive(Debug, Clone)]
pub(crate) struct LeakCheck {
    /// pgtide's client port.
    pub port: u16,
    /// The cluster's unix socket directory and port, for `pg_stat_activity` as `postgres`.
    pub socket_dir: std::path::PathBuf,
    pub pg_port: u16,
}

impl LeakCheck {
    /// Waits up to [`GRACE`] for both symptoms to clear; the last finding when they do not.
    pub(crate) fn run(&self, handle: &ProxyHandle) -> Result<(), String> {
        let deadline = Instant::now() + GRACE;
        loop {
            let finding = self.find(handle);
            match finding {
                None => return Ok(()),
                Some(f) if Instant::now() >= deadline => return Err(f),
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn find(&self, handle: &ProxyHandle) -> Option<String> {
        let stuck = close_wait_sockets(self.port);
        if stuck > 0 {
            return Some(format!(
                "{stuck} client connection(s) closed by the client are still held by pgtide \
                 (CLOSE_WAIT on port {}): a session is stuck, with whatever server it holds",
                self.port
            ));
        }
        let idle: Vec<i32> = handle
            .shared()
            .pools()
            .iter()
            .flat_map(|p| p.idle_backend_pids())
            .collect();
        if idle.is_empty() {
            return None;
        }
        let list = idle
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT pid || ' ' || state FROM pg_stat_activity \
             WHERE pid IN ({list}) AND state <> 'idle'"
        );
        let mut cmd = crate::psql::psql_command();
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.pg_port.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-c", &sql]);
        // A stopped or killed cluster (fault tests) has no backends to check.
        let busy = crate::pgbin::run(&mut cmd).ok()?;
        let busy = busy.trim();
        (!busy.is_empty())
            .then(|| format!("servers in pgtide's idle lists are not idle on the server: {busy}"))
    }
}

/// Sockets on local port `port` in state CLOSE_WAIT (the peer closed, we did not).
fn close_wait_sockets(port: u16) -> usize {
    const CLOSE_WAIT: &str = "08";
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let mut cols = line.split_whitespace().skip(1);
                    let local = cols.next().unwrap_or_default();
                    let state = cols.nth(1).unwrap_or_default();
                    let local_port = local
                        .rsplit(':')
                        .next()
                        .and_then(|h| u16::from_str_radix(h, 16).ok());
                    local_port == Some(port) && state == CLOSE_WAIT
                })
                .count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_socket_the_peer_closed_is_seen_in_close_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut held, _) = listener.accept().unwrap();
        assert_eq!(close_wait_sockets(port), 0);
        drop(client);
        let mut buf = [0u8; 1];
        assert_eq!(held.read(&mut buf).unwrap(), 0, "EOF reached the holder");
        assert_eq!(close_wait_sockets(port), 1);
        drop(held);
        assert_eq!(close_wait_sockets(port), 0);
    }
}
