//! Starting `gpuwatch serve`: bind, serve, stop on shutdown.

use tokio_util::sync::CancellationToken;

use crate::{router, AppState};

/// Serves until `shutdown`, finishing requests in flight.
pub async fn serve(state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&state.cfg.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (api.listen / GPUWATCH_LISTEN): {e}",
                    state.cfg.listen
                ),
            )
        })?;
    let addr = listener.local_addr()?;
    // One line a supervisor (or a test) can read the real port from.
    tracing::info!(listen = %addr, tls = state.cfg.tls.is_some(), "serving /api/v1, /metrics, /health and /ready");
    if let Some(tls) = state.cfg.tls.clone() {
        return crate::tls::serve(listener, router(state), &tls, shutdown).await;
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
