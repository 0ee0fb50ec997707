//! The page, health, readiness, metrics and the OpenAPI document.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::HttpState;

/// The web chat page: one file, inline CSS and JS, nothing fetched from elsewhere.
pub async fn page() -> Response {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        )],
        Html(include_str!("page.html")),
    )
        .into_response()
}

/// Live as long as the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// How long a vendor probe result is reused.
const PROBE_TTL: Duration = Duration::from_secs(15);

/// Ready when the store answers and the LLM vendor is reachable or explicitly not
/// configured; never while shutting down.
pub async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let store = match state.kb.store.stats().await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    let llm = if state.kb.llm.is_none() {
        Ok("not configured".to_owned())
    } else {
        llm_reachable(&state).await.map(|()| "reachable".to_owned())
    };
    let stopping = state.shutdown.is_cancelled();
    let ready = store.is_ok() && llm.is_ok() && !stopping;
    let show = |r: &Result<String, String>| match r {
        Ok(s) => s.clone(),
        Err(e) => format!("failing: {e}"),
    };
    let body = json!({
        "ready": ready,
        "store": show(&store.map(|()| "open".to_owned())),
        "llm": show(&llm),
        "shutting_down": stopping,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The vendor's base URL answers HTTP at all (any status); cached for [`PROBE_TTL`].
async fn llm_reachable(state: &HttpState) -> Result<(), String> {
    if let Some((at, result)) = state.llm_probe.lock().expect("not poisoned").as_ref()
        && at.elapsed() < PROBE_TTL
    {
        return result.clone();
    }
    let result = probe(&state.kb.settings.llm).await;
    *state.llm_probe.lock().expect("not poisoned") = Some((Instant::now(), result.clone()));
    result
}

async fn probe(llm: &lore_core::llm::LlmSettings) -> Result<(), String> {
    let base = match &llm.base_url {
        Some(url) => url.clone(),
        None => match llm.provider.as_str() {
            "openai" => "https://api.openai.com/v1".to_owned(),
            "zhipu" => "https://open.bigmodel.cn/api/paas/v4".to_owned(),
            "qianfan" => "https://aip.baidubce.com".to_owned(),
            "spark" => "https://spark-api.xf-yun.com".to_owned(),
            other => return Err(format!("no known address for provider {other:?}")),
        },
    };
    let base = base
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    match client.get(&base).send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "{} is unreachable: {}",
            llm.provider.as_str(),
            e.without_url()
        )),
    }
}

/// Prometheus text; store size, remembered conversations, rate-limit keys and the bytes of
/// uploads in flight are read at scrape time.
pub async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    if let Ok(stats) = state.kb.store.stats().await {
        metrics::gauge!("lore_store_chunks").set(stats.chunks as f64);
        metrics::gauge!("lore_store_bytes").set(stats.bytes_on_disk as f64);
    }
    metrics::gauge!("lore_memory_conversations").set(state.core.memory.len() as f64);
    metrics::gauge!("lore_rate_limit_keys").set(state.core.rate_limit_keys() as f64);
    metrics::gauge!("lore_questions_waiting").set(state.core.backlog() as f64);
    metrics::gauge!("lore_uploads_inflight_bytes").set(state.core.uploads.in_flight_bytes() as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
