//! The admin listener: its own TCP socket (loopback by default), stopped with pgtide.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::routes::router;
use crate::state::AdminState;

/// Binds the admin listener (`admin.listen`).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the API on `listener` until `shutdown` resolves (the daemon passes pgtide's shutdown
/// signal), then lets requests in progress finish. Peer addresses reach the handlers (the
/// refusal log line names them).
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
