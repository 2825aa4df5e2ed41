//! The seam between a pool and the network: a pool opens servers through a [`Connect`], so
//! its state machine (acquire, release, resize, caps, breaker, refill, drain) is unit-tested
//! with an in-memory fake (`pool/fake.rs`) on a paused clock, and the daemon uses
//! [`TcpConnector`] — TCP or TLS to PostgreSQL, [`super::connect`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{connect, ServerConn, ServerTarget, StartupSettings};
use crate::error::ServerError;

/// A connect in progress (boxed: opening a server is rare, and pools hold many connectors'
/// worth of futures only while connecting).
pub type Connecting<'a> =
    Pin<Box<dyn Future<Output = Result<ServerConn, ServerError>> + Send + 'a>>;

/// Opens authenticated server connections for a pool.
pub trait Connect: Send + Sync + std::fmt::Debug {
    /// A connection to `target`, started with a client's `startup` settings when given
    /// (session mode), bounded by `target.connect_timeout`.
    fn connect<'a>(
        &'a self,
        target: &'a ServerTarget,
        startup: Option<&'a Arc<StartupSettings>>,
    ) -> Connecting<'a>;
}

/// The real connector: resolve, TCP, optional TLS, startup, authentication.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpConnector;

impl Connect for TcpConnector {
    fn connect<'a>(
        &'a self,
        target: &'a ServerTarget,
        startup: Option<&'a Arc<StartupSettings>>,
    ) -> Connecting<'a> {
        Box::pin(connect(target, startup))
    }
}
