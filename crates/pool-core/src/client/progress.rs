//! The release rule, as pure code: fed the client's and the server's bytes (through a
//! [`StreamScanner`] per direction), [`Progress`] answers whether the server may go back to the
//! pool now ([`Progress::verdict`]) and, when the client is gone, whether it can be reused or
//! must be closed ([`Progress::reusable`]).
//!
//! The session counts the client's sync points (Query, Sync, FunctionCall) against the
//! server's ReadyForQuery messages. A server is given back exactly when every sync point has
//! been answered, the last ReadyForQuery said 'I', no extended-protocol message is waiting for
//! a Sync, and both streams sit at a message boundary. Anything less closes the server: it is
//! never returned in an unknown state.
//!
//! Two protocol corners shape the counting. PostgreSQL ignores a Sync that reaches it in
//! copy-in mode, so the Syncs a client pipelines after the Execute that starts a COPY FROM
//! STDIN get no ReadyForQuery and are discounted once copy data shows the COPY started. And a
//! client's Terminate is pgtide's to handle (the server is not the client's to close): it is
//! cut from what is forwarded.
//!
//! No I/O, no clock, no allocation: the forwarding loop (`client/bound.rs`) calls these per read,
//! and the unit tests (`progress/tests.rs`) feed them byte streams split at every boundary.

use pgtide_config::PoolMode;
use pgtide_protocol::stream::{ScannedFrame, StreamScanner};
use pgtide_protocol::{tag, BackendMessage, ProtocolError, TransactionStatus};

#[cfg(test)]
mod tests;

/// Where the client and its server stand with respect to the transaction protocol.
#[derive(Debug, Clone, Copy)]
pub(super) struct Progress {
    /// Sync points sent to the server and not yet answered by ReadyForQuery.
    pub(super) pending: u32,
    /// Parse/Bind/Execute/Describe/Close sent since the last sync point.
    unsynced: bool,
    /// The last ReadyForQuery's status.
    pub(super) status: TransactionStatus,
    /// The last server frame seen was ReadyForQuery.
    pub(super) at_ready: bool,
    /// The client sent Terminate.
    pub(super) terminated: bool,
    /// The start of a frame that is not forwarded reached the server in an earlier read (a
    /// Terminate split across reads): the server's input stops mid-frame, so it can only be
    /// closed.
    torn: bool,
    /// An ErrorResponse from the server said it is shutting down.
    pub(super) server_shutting_down: bool,
    /// ErrorResponses with SQLSTATE 57014 (query_canceled) not yet looked at: whether each is
    /// the server's statement_timeout depends on who cancelled (`client/timing.rs`).
    pub(super) canceled: u32,
    /// Syncs sent since the last Execute: if copy data follows, the Execute started a
    /// COPY FROM STDIN and PostgreSQL ignores these Syncs (it does so in copy-in mode), so they
    /// get no ReadyForQuery and must not be waited for.
    syncs_since_execute: u32,
    /// Copy data was seen since the last Execute/Query (the discount above is applied once).
    in_copy: bool,
}

/// Whether each stream sits at a message boundary, as the release rule needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Boundaries {
    /// The server's stream: no frame partly read.
    pub server: bool,
    /// The client's stream: no frame partly read, and nothing read but not yet scanned (with
    /// statement tracking an incomplete frame waits unscanned in the client buffer, and it
    /// belongs to this server's stream).
    pub client: bool,
}

/// What the release rule says after server bytes were forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Keep forwarding: the server is still the client's.
    Keep,
    /// The transaction is over and the server is clean: give it back.
    Release,
    /// Statement mode, and the client opened a transaction block: refuse it.
    TransactionBlock,
}

impl Progress {
    /// A client with nothing in flight, as after login or a release.
    pub(super) fn new() -> Self {
        Self {
            pending: 0,
            unsynced: false,
            status: TransactionStatus::Idle,
            at_ready: true,
            terminated: false,
            torn: false,
            server_shutting_down: false,
            canceled: 0,
            syncs_since_execute: 0,
            in_copy: false,
        }
    }

    /// The server can serve another client now.
    pub(super) fn server_idle(&self) -> bool {
        self.pending == 0
            && !self.unsynced
            && self.at_ready
            && self.status == TransactionStatus::Idle
    }

    /// Every sync point sent has been answered and the answer ended the server's output: the
    /// server waits for the client.
    pub(super) fn answered(&self) -> bool {
        self.pending == 0 && self.at_ready
    }

    /// Whether the server goes back now (checked after each server read, once its bytes went
    /// to the client). Session mode keeps the server with its client; statement mode refuses
    /// a transaction block the moment its first statement is answered.
    pub(super) fn verdict(&self, mode: PoolMode, at: Boundaries) -> Verdict {
        if !(self.answered() && at.server && at.client) {
            return Verdict::Keep;
        }
        if mode == PoolMode::Statement && self.status != TransactionStatus::Idle {
            return Verdict::TransactionBlock;
        }
        if mode != PoolMode::Session && self.server_idle() {
            return Verdict::Release;
        }
        Verdict::Keep
    }

    /// The client is gone (closed, broke or sent Terminate): whether its server is clean and
    /// may serve another client, rather than be closed. Nobody will read the answers still
    /// due, and in COPY FROM STDIN (or after an error awaiting Sync) none would ever come, so
    /// a server that is not idle right now is closed at once, and its backend ends the COPY and
    /// transaction with it.
    pub(super) fn reusable(&self, at: Boundaries) -> bool {
        self.server_idle() && !self.torn && at.server && at.client
    }

    /// Notes one complete client frame that goes to the server. Returns `false` for Terminate,
    /// which does not go (nor does anything after it).
    pub(super) fn client_frame(&mut self, frame_tag: u8) -> bool {
        match frame_tag {
            tag::frontend::SYNC => {
                self.pending += 1;
                self.syncs_since_execute += 1;
                self.unsynced = false;
                self.at_ready = false;
            }
            tag::frontend::QUERY | tag::frontend::FUNCTION_CALL => {
                self.pending += 1;
                self.syncs_since_execute = 0;
                self.in_copy = false;
                self.unsynced = false;
                self.at_ready = false;
            }
            tag::frontend::EXECUTE => {
                self.syncs_since_execute = 0;
                self.in_copy = false;
                self.unsynced = true;
                self.at_ready = false;
            }
            tag::frontend::PARSE
            | tag::frontend::BIND
            | tag::frontend::DESCRIBE
            | tag::frontend::CLOSE => {
                self.unsynced = true;
                self.at_ready = false;
            }
            tag::frontend::COPY_DATA | tag::frontend::COPY_DONE | tag::frontend::COPY_FAIL
                if !self.in_copy =>
            {
                // The Syncs between the Execute that started this COPY FROM STDIN and its data
                // reached the server in copy-in mode and were ignored.
                self.in_copy = true;
                self.pending -= self.syncs_since_execute.min(self.pending);
                self.syncs_since_execute = 0;
            }
            tag::frontend::TERMINATE => {
                self.terminated = true;
                return false;
            }
            _ => {}
        }
        true
    }

    /// Notes one complete server frame; `body` is there for the tags [`server_wants_body`]
    /// names (unless oversized).
    pub(super) fn server_frame(&mut self, frame_tag: u8, body: Option<&[u8]>) {
        match frame_tag {
            tag::backend::READY_FOR_QUERY => {
                self.pending = self.pending.saturating_sub(1);
                if let Some(status) = body
                    .and_then(|b| b.first())
                    .and_then(|b| TransactionStatus::from_byte(*b))
                {
                    self.status = status;
                }
                self.at_ready = true;
            }
            tag::backend::ERROR_RESPONSE => {
                self.at_ready = false;
                if let Some(Ok(BackendMessage::ErrorResponse(fields))) =
                    body.map(|b| pgtide_protocol::backend::decode(frame_tag, b))
                {
                    match fields.code.as_ref().map(|c| c.as_str()) {
                        Some("57P01" | "57P02" | "57P03") => self.server_shutting_down = true,
                        // Counted by code alone: the message is in the server's lc_messages.
                        Some("57014") => self.canceled += 1,
                        _ => {}
                    }
                }
            }
            _ => self.at_ready = false,
        }
    }
}

/// The server frames whose bodies the session reads: ReadyForQuery (the status),
/// ParameterStatus (the session's settings) and ErrorResponse (its SQLSTATE).
pub(super) fn server_wants_body(frame_tag: u8) -> bool {
    matches!(
        frame_tag,
        tag::backend::READY_FOR_QUERY
            | tag::backend::PARAMETER_STATUS
            | tag::backend::ERROR_RESPONSE
    )
}

/// Scans client bytes into `p`: counts sync points, notes unsynced extended-protocol messages
/// and cuts the bytes at Terminate. `on_sql` sees each Query and Parse before the cut (with its
/// body when `capture_sql`, for the slow query log). Returns how many of the bytes go to the
/// server.
pub(super) fn scan_client(
    scan: &mut StreamScanner,
    data: &[u8],
    p: &mut Progress,
    capture_sql: bool,
    mut on_sql: impl FnMut(u8, Option<&[u8]>),
) -> Result<usize, ProtocolError> {
    let mut cut = None;
    scan.feed(
        data,
        |t| capture_sql && (t == tag::frontend::QUERY || t == tag::frontend::PARSE),
        |f| {
            if cut.is_some() {
                return;
            }
            if matches!(f.tag, tag::frontend::QUERY | tag::frontend::PARSE) {
                on_sql(f.tag, f.body);
            }
            if !p.client_frame(f.tag) {
                // A frame that started in an earlier read: its first bytes already went.
                p.torn |= f.end < f.len;
                cut = Some(f.end.saturating_sub(f.len));
            }
        },
    )?;
    Ok(cut.unwrap_or(data.len()))
}

/// Scans server bytes into `p` (ReadyForQuery answers a sync point; ErrorResponse codes are
/// noted); `on_frame` sees every frame first, for what the session tracks besides the rule
/// (ParameterStatus, prepared statements' answers).
pub(super) fn scan_server(
    scan: &mut StreamScanner,
    data: &[u8],
    p: &mut Progress,
    mut on_frame: impl FnMut(&ScannedFrame<'_>),
) -> Result<(), ProtocolError> {
    scan.feed(data, server_wants_body, |f| {
        on_frame(&f);
        p.server_frame(f.tag, f.body);
    })
}
