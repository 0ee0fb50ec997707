//! Overhead of the vendor layer per call, against a local OpenAI-compatible fake that answers at
//! once: a bare reqwest POST as the baseline, then the wrapped client (limiter, retry, semaphore),
//! streaming, and 1,000 concurrent calls. Run: `cargo bench --bench vendor_overhead`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::post;
use futures::StreamExt;
use lore_core::llm::{ChatMessage, ChatModel, ChatRequest, LlmSettings, Secrets, build_chat_model};

const SEQUENTIAL: usize = 2_000;
const CONCURRENT: usize = 1_000;

async fn completion() -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
    )
}

async fn stream() -> impl IntoResponse {
    let mut body = String::new();
    for piece in ["Hel", "lo", " wor", "ld"] {
        body.push_str(&format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}},\"finish_reason\":null}}]}}\n\n"));
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    ([("content-type", "text/event-stream")], body)
}

async fn serve() -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(completion))
        .route("/stream/v1/chat/completions", post(stream));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{name:<44} n={:<5} p50={:>8.1} µs  p99={:>8.1} µs",
        samples.len(),
        micros(p50),
        micros(p99)
    );
    p50
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn model(url: &str, rpm: u32, concurrency: usize) -> Arc<dyn ChatModel> {
    // The shipped defaults (settings.toml), with what the bench varies set on top.
    let defaults = lore::settings::Settings::load(None, std::iter::empty())
        .expect("settings.toml loads")
        .llm;
    let settings = LlmSettings {
        provider: "openai".parse().unwrap(),
        base_url: Some(format!("{url}/v1")),
        model: "bench".into(),
        requests_per_minute: rpm,
        max_concurrency: concurrency,
        ..defaults
    };
    build_chat_model(
        &settings,
        &Secrets::from_pairs([("OPENAI_API_KEY", "sk-bench")]),
    )
    .unwrap()
    .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![
        ChatMessage::system("Answer briefly."),
        ChatMessage::user("Say ok."),
    ])
}

async fn time_sequential<F, Fut>(mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..100 {
        call().await; // warm the connection pool
    }
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        call().await;
        samples.push(t.elapsed());
    }
    samples
}

async fn concurrent(name: &str, model: Arc<dyn ChatModel>) {
    let started = Instant::now();
    let calls = (0..CONCURRENT).map(|_| {
        let model = model.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            model.chat(request()).await.expect("concurrent call");
            t.elapsed()
        })
    });
    let samples: Vec<Duration> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let wall = started.elapsed();
    report(name, samples);
    println!(
        "{:<44} wall={:.1} ms  throughput={:.0} calls/s",
        "",
        wall.as_secs_f64() * 1e3,
        CONCURRENT as f64 / wall.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let url = serve().await;
    let body = serde_json::json!({"model":"bench","messages":[{"role":"system","content":"Answer briefly."},{"role":"user","content":"Say ok."}],"stream":false});
    let raw = reqwest::Client::new();
    let endpoint = format!("{url}/v1/chat/completions");
    let baseline = report(
        "bare reqwest POST + JSON parse (baseline)",
        time_sequential(|| async {
            let r = raw
                .post(&endpoint)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let _: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        })
        .await,
    );
    let unlimited = model(&url, 0, 4);
    let wrapped = report(
        "chat(): ResilientChatModel, no rate limit",
        time_sequential(|| async { unlimited.chat(request()).await.map(drop).unwrap() }).await,
    );
    let limited = model(&url, 10_000_000, 4);
    let with_limiter = report(
        "chat(): with governor RPM limiter",
        time_sequential(|| async { limited.chat(request()).await.map(drop).unwrap() }).await,
    );
    let streaming = model(&format!("{url}/stream"), 0, 4);
    report(
        "chat_stream(): 4 SSE deltas collected",
        time_sequential(|| async {
            let deltas: Vec<_> = streaming
                .chat_stream(request())
                .await
                .unwrap()
                .collect()
                .await;
            assert_eq!(deltas.len(), 4);
        })
        .await,
    );
    println!(
        "overhead per call over the baseline (p50): {:.1} µs unlimited, {:.1} µs with the limiter",
        micros(wrapped.saturating_sub(baseline)),
        micros(with_limiter.saturating_sub(baseline))
    );
    concurrent(
        "1,000 concurrent chat(), max_concurrency=64",
        model(&url, 0, 64),
    )
    .await;
    concurrent(
        "1,000 concurrent chat(), max_concurrency=1000",
        model(&url, 0, 1000),
    )
    .await;
}
