//! `/healthz`, `/readyz` and Prometheus `/metrics` over HTTP, and the probe behind each
//! binary's `healthcheck` subcommand.
//!
//! The images have no shell and no curl, so a container health check runs the service's own
//! binary as `order-tracker healthcheck`: [`probe`] asks `/readyz` on `HEALTH_PORT` and the
//! subcommand exits 0 or 1. `/healthz` says the process is serving; `/readyz` says it is useful
//! (the producer reached the broker, the tracker is in its group), as set through [`Readiness`].

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::shutdown::Shutdown;

/// Whether the service is ready; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    readiness: Readiness,
    registry: Arc<Registry>,
}

/// The health port could not be bound (in use, or not permitted).
#[derive(Debug, thiserror::Error)]
#[error("cannot serve health on port {port}: {source}")]
pub struct HealthBindError {
    pub port: u16,
    #[source]
    pub source: std::io::Error,
}

/// A bound health server; [`serve`](HealthServer::serve) runs it until shutdown.
#[derive(Debug)]
pub struct HealthServer {
    listener: TcpListener,
}

impl HealthServer {
    /// Binds `0.0.0.0:port` (port 0 picks a free one, for tests).
    pub async fn bind(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await?;
        Ok(HealthServer { listener })
    }

    /// Binds `0.0.0.0:port` and serves in a background task until `shutdown` fires: what
    /// each long-running service does at start.
    pub async fn start(
        port: u16,
        readiness: Readiness,
        registry: Registry,
        shutdown: &Shutdown,
    ) -> Result<JoinHandle<std::io::Result<()>>, HealthBindError> {
        let server = Self::bind(port)
            .await
            .map_err(|source| HealthBindError { port, source })?;
        Ok(tokio::spawn(server.serve(
            readiness,
            Arc::new(registry),
            shutdown.clone(),
        )))
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires.
    pub async fn serve(
        self,
        readiness: Readiness,
        registry: Arc<Registry>,
        mut shutdown: Shutdown,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(AppState {
                readiness,
                registry,
            });
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Asks `http://127.0.0.1:{port}{path}` and says whether it answered 200 within two seconds.
pub fn probe(port: u16, path: &str) -> bool {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    match agent.get(format!("http://127.0.0.1:{port}{path}")).call() {
        Ok(response) => response.status() == 200,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown;

    #[tokio::test]
    async fn readyz_follows_readiness_and_metrics_are_exposed() {
        let server = HealthServer::bind(0).await.expect("bind");
        let port = server.local_addr().expect("addr").port();
        let readiness = Readiness::default();
        let mut registry = Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("orders_seen", "Orders seen", counter.clone());
        counter.inc_by(3);
        let (trigger, shutdown) = shutdown::channel();
        let serving = tokio::spawn(server.serve(readiness.clone(), Arc::new(registry), shutdown));

        let ask = move |path: &'static str| tokio::task::spawn_blocking(move || probe(port, path));
        assert!(ask("/healthz").await.expect("join"));
        assert!(!ask("/readyz").await.expect("join"), "not ready yet");
        readiness.set(true);
        assert!(ask("/readyz").await.expect("join"));

        let body = tokio::task::spawn_blocking(move || {
            ureq::get(format!("http://127.0.0.1:{port}/metrics"))
                .call()
                .expect("metrics")
                .into_body()
                .read_to_string()
                .expect("body")
        })
        .await
        .expect("join");
        assert!(body.contains("orders_seen_total 3"), "{body}");

        trigger.trigger();
        serving.await.expect("join").expect("served");
        assert!(
            !tokio::task::spawn_blocking(move || probe(port, "/healthz"))
                .await
                .expect("join")
        );
    }
}
