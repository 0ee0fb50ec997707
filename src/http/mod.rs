//! The HTTP API, the web chat page, health and metrics, started by `lore serve` when
//! `[http] listen` is set. Questions go through the bot core (`bot::turn`) as
//! the platform "http": the same scope, rate limits, memory, span and metrics as a chat.
//! Routes come from one table ([`routes::ROUTES`]), which also generates `/openapi.json`.

mod api;
pub mod auth;
mod error;
mod openai;
mod ops;
pub mod routes;
pub mod settings;

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use auth::Tokens;
pub use error::ApiError;
use lore_core::bot::Core;
use lore_core::kb::KnowledgeBase;
use lore_core::llm::Secrets;
use settings::HttpSettings;

/// The platform name of HTTP questions in conversation keys, rate limits and metrics.
pub const PLATFORM: &str = "http";

/// Everything a handler needs.
pub struct HttpState {
    pub kb: Arc<KnowledgeBase>,
    pub core: Arc<Core>,
    pub tokens: Tokens,
    pub settings: HttpSettings,
    /// Cancelled on SIGTERM: no new work, in-flight answers get `shutdown_drain_secs`.
    pub shutdown: CancellationToken,
    metrics: PrometheusHandle,
    /// The last LLM reachability probe of `/readyz`, so probes do not hammer the vendor.
    llm_probe: Mutex<Option<(Instant, Result<(), String>)>>,
}

/// Why bounded work did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    TimedOut,
    ShuttingDown,
}

impl HttpState {
    /// Runs `work` until it ends, the request timeout passes, or shutdown has been under way
    /// for the drain period, whichever comes first.
    pub async fn bounded<T>(&self, work: impl Future<Output = T>) -> Result<T, Cut> {
        let drain = Duration::from_secs(self.settings.shutdown_drain_secs);
        let shutdown = self.shutdown.clone();
        tokio::select! {
            out = work => Ok(out),
            () = tokio::time::sleep(Duration::from_secs(self.settings.request_timeout_secs)) => Err(Cut::TimedOut),
            () = async move { shutdown.cancelled().await; tokio::time::sleep(drain).await } => Err(Cut::ShuttingDown),
        }
    }
}

/// What the HTTP surface serves: the knowledge base, the bot core its questions go
/// through, and the shutdown signal.
pub struct HttpParts {
    pub kb: Arc<KnowledgeBase>,
    pub core: Arc<Core>,
    pub shutdown: CancellationToken,
}

/// The surface `lore serve` runs: binds `[http] listen` and serves until shutdown.
pub async fn serve(parts: HttpParts, settings: HttpSettings, secrets: &Secrets) -> Result<()> {
    let listen = settings.listen.clone().context("http.listen is not set")?;
    let data_dir_lock = parts.kb.data_dir_lock.clone();
    let state = state_from(parts, settings, secrets)?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    let address = listener.local_addr()?;
    // Another lore command on this data dir is refused; it names this address so the
    // person can send the request here instead.
    if let Some(lock) = data_dir_lock
        && let Err(e) = lock.record_http(&address.to_string())
    {
        tracing::warn!(lock = %lock.path().display(), error = %e, "could not record the HTTP address");
    }
    tracing::info!(address = %address, "HTTP API listening");
    serve_on(listener, state).await
}

/// Builds the state: tokens from the environment (refused with a clear reason when absent
/// or malformed) and the Prometheus recorder.
pub fn state_from(
    parts: HttpParts,
    settings: HttpSettings,
    secrets: &Secrets,
) -> Result<Arc<HttpState>> {
    let env = settings.tokens_env.clone();
    let value = secrets.get(&env).with_context(|| {
        format!(
            "the HTTP API needs tokens: set {env}=\"token:tenant:role,...\" (role read or admin)"
        )
    })?;
    let tokens = Tokens::parse(&env, value.expose())?;
    tracing::info!(tokens = tokens.len(), "HTTP API tokens loaded");
    Ok(Arc::new(HttpState {
        kb: parts.kb,
        core: parts.core,
        tokens,
        settings,
        shutdown: parts.shutdown,
        metrics: metrics_handle(),
        llm_probe: Mutex::new(None),
    }))
}

/// Serves on a bound listener until the shutdown token is cancelled and every in-flight
/// request (answers included, within the drain period) has ended.
pub async fn serve_on(listener: tokio::net::TcpListener, state: Arc<HttpState>) -> Result<()> {
    let shutdown = state.shutdown.clone();
    let upkeep = {
        let handle = state.metrics.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    () = stop.cancelled() => return,
                }
            }
        })
    };
    let header_timeout = Duration::from_secs(state.settings.header_timeout_secs);
    let router = router(state);
    serve_connections(listener, router, shutdown, header_timeout).await;
    upkeep.abort();
    tracing::info!("HTTP API stopped");
    Ok(())
}

/// Accepts HTTP/1.1 connections until shutdown, then lets each finish its request in flight
/// and returns when all have closed. Not `axum::serve`: it sets no timer, so hyper's limit
/// on reading a request head never applies, and a client trickling header bytes would hold
/// a connection and a task for as long as it likes.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
    header_timeout: Duration,
) {
    // Each connection task holds a receiver; `closed` resolves when the last one is gone.
    let (all_closed, connection_open) = tokio::sync::watch::channel(());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let (shutdown, open) = (shutdown.clone(), connection_open.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(connection_open);
    all_closed.closed().await;
}

/// Every route of the table, the shutdown gate, and the fallback.
pub fn router(state: Arc<HttpState>) -> Router {
    routes::build(state.clone())
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .layer(axum::middleware::from_fn_with_state(
            state,
            refuse_when_stopping,
        ))
}

/// After SIGTERM, new work is refused (probes and metrics still answer).
async fn refuse_when_stopping(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let probe = matches!(path, "/healthz" | "/readyz" | "/metrics");
    if state.shutdown.is_cancelled() && !probe {
        return axum::response::IntoResponse::into_response(ApiError::shutting_down());
    }
    next.run(request).await
}

/// The process-wide Prometheus recorder, installed on first use.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &buckets)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows only its own"
                );
            }
            handle
        })
        .clone()
}
