//! How a session ends: its server is given back (after the reset query in session mode) or
//! closed, the failure is reported, and the client is told why — a lost server, a limit, a
//! protocol violation, `client_idle_timeout`. Every path here is rare; each is boxed by its
//! caller so that the hot loop's futures stay small.

use std::time::Duration;

use pgtide_config::PoolMode;
use pgtide_protocol::{ProtocolError, SqlState};

use super::refusal::{refuse, Refusal};
use super::session::Session;
use crate::failure::FailureClass;
use crate::pool::Checkout;
use crate::server::ServerConn;

/// Settings PostgreSQL 15 reports with ParameterStatus whenever they change.
const REPORTED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// How a bound period ended.
pub(super) enum Unbind {
    /// The transaction is over; release the server and wait for the client's next one.
    Released,
    /// The client left (or broke); release the server when `reusable`, else close it.
    ClientGone { reusable: bool },
    /// The server broke; tell the client and close.
    ServerGone { class: FailureClass, error: String },
    /// pgtide ends the session (the client broke the protocol, a limit fired): tell the client
    /// and close the server. Boxed: an `Unbind` lives in the session's futures, a refusal
    /// almost never.
    Refused(Box<Refusal>),
}

impl Unbind {
    /// The client broke the protocol.
    pub(super) fn violation(e: &ProtocolError) -> Self {
        Unbind::Refused(Box::new(Refusal::protocol(e)))
    }

    /// The server connection failed (a read or write error, or EOF).
    pub(super) fn lost(error: impl ToString) -> Self {
        Unbind::ServerGone {
            class: FailureClass::ServerConnLost,
            error: error.to_string(),
        }
    }
}

impl Session {
    /// Ends the session after a bound period that did not simply release its server: the
    /// server is released or closed, the failure reported, the client told why.
    pub(super) async fn end(
        &mut self,
        mut checkout: Checkout,
        outcome: Unbind,
        server_shutting_down: bool,
    ) {
        let refusal = match outcome {
            Unbind::Released => return self.pool.release(checkout, true),
            Unbind::ClientGone { reusable } => return self.finish(checkout, reusable).await,
            Unbind::ServerGone { class, error } => {
                let class = if server_shutting_down {
                    FailureClass::ServerShutdown
                } else {
                    class
                };
                let message = format!("pgtide [{class}]: server connection lost: {error}");
                Refusal::new(class, SqlState::CONNECTION_FAILURE, message)
                    .hint("The statement may or may not have run; pgtide does not retry it. Reconnect and check.")
                    .server(checkout.conn().addr)
            }
            Unbind::Refused(refusal) => *refusal,
        };
        drop(checkout);
        refuse(
            &mut self.client,
            &self.failures,
            self.pool.name(),
            self.peer,
            &refusal,
        )
        .await;
    }

    /// Ends a session whose client left: the server goes back (after the reset query in
    /// session mode) or is closed.
    pub(super) async fn finish(&mut self, mut checkout: Checkout, reusable: bool) {
        if !reusable {
            drop(checkout);
            return;
        }
        if self.mode == PoolMode::Session {
            let reset = self.pool.settings().reset_query.clone();
            if !reset.trim().is_empty() {
                let ok = reset_server(checkout.conn(), &reset).await;
                if !ok {
                    drop(checkout);
                    return;
                }
            }
        }
        self.pool.release(checkout, true);
    }

    /// `client_idle_timeout` fired: the client is told and the session ends.
    pub(super) async fn idle_timeout(&mut self, limit: Duration) {
        let message = format!(
            "pgtide [client_idle_timeout]: closing the connection after {} idle (client_idle_timeout)",
            pgtide_config::format_duration(limit)
        );
        let refusal = Refusal::new(
            FailureClass::ClientIdleTimeout,
            SqlState::IDLE_SESSION_TIMEOUT,
            message,
        )
        .elapsed(limit);
        refuse(
            &mut self.client,
            &self.failures,
            self.pool.name(),
            self.peer,
            &refusal,
        )
        .await;
    }

    /// The client broke the protocol while no server was bound.
    pub(super) async fn protocol_violation(&mut self, e: ProtocolError) {
        refuse(
            &mut self.client,
            &self.failures,
            self.pool.name(),
            self.peer,
            &Refusal::protocol(&e),
        )
        .await;
    }
}

/// Runs the reset query (session mode) and reports whether the server ended clean and idle.
async fn reset_server(server: &mut ServerConn, sql: &str) -> bool {
    let clean = matches!(server.run_own_query(sql, |_, _| {}).await, Ok(None));
    // The reset may have deallocated every statement (DISCARD ALL); never assume one survived.
    server.statements.clear();
    // Settings pgtide SET that the server does not report are gone after a reset; forget them
    // so the next client's values are applied again.
    server
        .params
        .retain(|name| REPORTED_PARAMS.iter().any(|r| r.eq_ignore_ascii_case(name)));
    // A server started with a client's settings is back at them (they are its defaults).
    if let Some(startup) = server.startup.clone() {
        for (name, value) in startup.iter() {
            if server.params.get(name).is_none() {
                server.params.set(name, value);
            }
        }
    }
    clean
}
