//! The release rule on byte streams: realistic message sequences of both directions, fed
//! whole, byte by byte, and split at every byte boundary, with the exact point where the server
//! may go back asserted; then the same rule driven over `tokio::io::duplex` by a small
//! forwarding adapter, so that real reads cut the frames wherever they happen to.

//!
//! - `messages` — the frontend and backend messages the scripts are made of;
//! - `protocol` — simple and extended query protocol, pipelining, modes;
//! - `copy` — COPY in both directions, Terminate, and what the rule notes besides;
//! - `duplex` — the rule over in-memory pipes.

use pgtide_config::PoolMode;
use pgtide_protocol::frame::MAX_FRAME_LEN;
use pgtide_protocol::stream::StreamScanner;

use super::*;

mod copy;
mod duplex;
mod messages;
mod protocol;

/// Who sent a step of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}
use Side::{Client, Server};

/// The release rule with its two scanners, fed the way `client/bound.rs` feeds it: client
/// bytes through [`scan_client`], server bytes through [`scan_server`], then a verdict after
/// each server read.
struct Rule {
    p: Progress,
    client: StreamScanner,
    server: StreamScanner,
    mode: PoolMode,
    /// Client bytes that went to the server.
    forwarded: Vec<u8>,
}

impl Rule {
    fn new(mode: PoolMode) -> Self {
        Rule {
            p: Progress::new(),
            client: StreamScanner::new(1 << 20),
            server: StreamScanner::new(MAX_FRAME_LEN),
            mode,
            forwarded: Vec::new(),
        }
    }

    fn client(&mut self, bytes: &[u8]) {
        let send = scan_client(&mut self.client, bytes, &mut self.p, false, |_, _| {}).unwrap();
        self.forwarded.extend_from_slice(&bytes[..send]);
    }

    fn server(&mut self, bytes: &[u8]) -> Verdict {
        scan_server(&mut self.server, bytes, &mut self.p, |_| {}).unwrap();
        self.p.verdict(self.mode, self.at())
    }

    fn at(&self) -> Boundaries {
        Boundaries {
            server: self.server.at_boundary(),
            client: self.client.at_boundary(),
        }
    }

    /// Whether the server could go back if the client vanished now.
    fn reusable(&self) -> bool {
        self.p.reusable(self.at())
    }
}

/// Runs `script` through the rule in `mode`, each step in reads of `piece` bytes, and returns
/// the first verdict other than Keep with where it came: the step, and how many of its bytes
/// had been read.
fn first_verdict(
    mode: PoolMode,
    script: &[(Side, Vec<u8>)],
    piece: usize,
) -> Option<(usize, usize, Verdict)> {
    let mut rule = Rule::new(mode);
    for (i, (from, bytes)) in script.iter().enumerate() {
        let mut read = 0;
        for chunk in bytes.chunks(piece) {
            read += chunk.len();
            match from {
                Client => rule.client(chunk),
                Server => match rule.server(chunk) {
                    Verdict::Keep => {}
                    v => return Some((i, read, v)),
                },
            }
        }
    }
    None
}

/// Same, with every step split in two at `at` (clamped): two reads of any sizes.
fn first_verdict_split(
    mode: PoolMode,
    script: &[(Side, Vec<u8>)],
    at: usize,
) -> Option<(usize, usize, Verdict)> {
    let mut rule = Rule::new(mode);
    for (i, (from, bytes)) in script.iter().enumerate() {
        let cut = at.min(bytes.len());
        for (part, read) in [(&bytes[..cut], cut), (&bytes[cut..], bytes.len())] {
            match from {
                Client => rule.client(part),
                Server => match rule.server(part) {
                    Verdict::Keep => {}
                    v => return Some((i, read, v)),
                },
            }
        }
    }
    None
}

/// Asserts that `script` ends with `verdict` exactly at its last byte — never earlier, read
/// whole, byte by byte, or split in two at any byte boundary — or never when `verdict` is
/// `None`.
fn assert_exactly_at_end(mode: PoolMode, script: &[(Side, Vec<u8>)], verdict: Option<Verdict>) {
    let last = script.len() - 1;
    let expected = verdict.map(|v| (last, script[last].1.len(), v));
    let longest = script.iter().map(|(_, b)| b.len()).max().unwrap();
    for piece in [longest, 1, 2, 3, 5, 7] {
        assert_eq!(
            first_verdict(mode, script, piece),
            expected,
            "{mode:?}, reads of {piece} bytes"
        );
    }
    for at in 0..=longest {
        assert_eq!(
            first_verdict_split(mode, script, at),
            expected,
            "{mode:?}, every step split at byte {at}"
        );
    }
}

const TX: PoolMode = PoolMode::Transaction;
