//! The cheapest proxy this kernel allows: one thread, one `epoll`, every client paired with its
//! own upstream connection, bytes copied through without being looked at.
//!
//! It exists to measure the floor under every pooler target in issue #7: whatever a real pooler
//! (pgtide, PgBouncer) spends per transaction beyond this relay is its own logic; what the relay
//! spends is the kernel's price of one extra hop (two `read`s, two `write`s and the wake-ups on
//! loopback). `benches/compare.sh` runs it beside direct, PgBouncer and pgtide; the reading is in
//! docs/benchmarks.md.
//!
//! Not a pooler: no pooling, no protocol, no TLS, no limits. Usage:
//! `relay-floor LISTEN_ADDR UPSTREAM_ADDR` (e.g. `127.0.0.1:28432 127.0.0.1:5432`). Runs until
//! killed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

/// Readiness events fetched per `epoll_wait`, as tokio's reactor does.
const EVENTS: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: relay-floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    }
    let listen: SocketAddr = parse(&args[1]);
    let upstream: SocketAddr = parse(&args[2]);
    if let Err(e) = run(listen, upstream) {
        eprintln!("relay-floor: {e}");
        std::process::exit(1);
    }
}

fn parse(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| {
        eprintln!("relay-floor: bad address {s:?}: {e}");
        std::process::exit(2);
    })
}

/// One side of a pair: its socket and the descriptor of the socket its bytes go to.
struct End {
    stream: TcpStream,
    peer: RawFd,
}

fn run(listen: SocketAddr, upstream: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    add(epoll, listener.as_raw_fd())?;
    let mut ends: HashMap<RawFd, End> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), EVENTS as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            if fd == listener.as_raw_fd() {
                accept_all(&listener, upstream, epoll, &mut ends);
                continue;
            }
            // Level-triggered: one read per event; if more is waiting, epoll says so again.
            let Some(end) = ends.get_mut(&fd) else {
                continue;
            };
            let peer = end.peer;
            let got = match end.stream.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => None,
            };
            let sent = match got {
                Some(n) => ends
                    .get_mut(&peer)
                    .is_some_and(|p| write_all(&mut p.stream, &buf[..n])),
                None => false,
            };
            if !sent {
                ends.remove(&fd);
                ends.remove(&peer);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    upstream: SocketAddr,
    epoll: RawFd,
    ends: &mut HashMap<RawFd, End>,
) {
    while let Ok((client, _)) = listener.accept() {
        let Ok(server) = TcpStream::connect(upstream) else {
            continue;
        };
        let paired = [&client, &server].iter().all(|s| {
            s.set_nodelay(true).is_ok()
                && s.set_nonblocking(true).is_ok()
                && add(epoll, s.as_raw_fd()).is_ok()
        });
        if !paired {
            continue;
        }
        let (c, s) = (client.as_raw_fd(), server.as_raw_fd());
        ends.insert(
            c,
            End {
                stream: client,
                peer: s,
            },
        );
        ends.insert(
            s,
            End {
                stream: server,
                peer: c,
            },
        );
    }
}

/// Writes everything; a full socket buffer (rare with these message sizes) is waited out
/// with `poll`, which keeps the relay single-threaded and simple at the price of stalling.
fn write_all(stream: &mut TcpStream, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut p = libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                unsafe { libc::poll(&mut p, 1, 1000) };
            }
            Err(_) => return false,
        }
    }
    true
}

fn add(epoll: RawFd, fd: RawFd) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: fd as u64,
    };
    cvt(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
}

fn cvt(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
