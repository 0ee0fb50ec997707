//! Webhook mode: Telegram POSTs each update to `[telegram] webhook_url`, which a reverse
//! proxy with TLS forwards to `webhook_listen`. Requests without the secret token set with
//! `setWebhook` are refused; `max_connections = 1` keeps updates in order.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use teloxide::prelude::*;
use teloxide::types::Update;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::{ALLOWED_UPDATES, Router, TelegramError, TelegramSettings};

/// The header Telegram sends the secret token in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

struct Hook {
    secret: String,
    updates: mpsc::UnboundedSender<Update>,
}

/// Listens, registers the webhook and hands updates to `router` until `shutdown`; returns
/// the events still being handled.
pub(crate) async fn serve(
    bot: &Bot,
    settings: &TelegramSettings,
    url: &str,
    router: &Router,
    shutdown: impl Future<Output = ()>,
) -> Result<JoinSet<()>, TelegramError> {
    let redactor = &router.outbox.redactor;
    let listen: SocketAddr = settings
        .webhook_listen
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| TelegramError(format!("telegram.webhook_listen: {e}")))?;
    let path = url_path(url);
    // Listening first, so the first delivery after setWebhook finds us.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| TelegramError(format!("cannot listen on {listen}: {e}")))?;
    let secret = random_secret();
    let parsed = url
        .parse()
        .map_err(|e| TelegramError(format!("telegram.webhook_url: {e}")))?;
    bot.set_webhook(parsed)
        .secret_token(secret.clone())
        .max_connections(1)
        .allowed_updates(ALLOWED_UPDATES)
        .await
        .map_err(|e| TelegramError(format!("setWebhook failed: {}", redactor.clean(&e))))?;
    tracing::info!(%listen, "receiving Telegram updates by webhook");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(&path, axum::routing::post(receive))
        .with_state(Arc::new(Hook {
            secret,
            updates: tx,
        }));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tokio::pin!(shutdown);
    let mut inflight = JoinSet::new();
    let mut last = None;
    loop {
        let update = tokio::select! {
            () = &mut shutdown => break,
            update = rx.recv() => match update {
                Some(update) => update,
                None => break,
            },
        };
        // A redelivered update (Telegram retries when an answer was lost) is handled once.
        if last.is_some_and(|l| update.id <= l) {
            continue;
        }
        last = Some(update.id);
        router.dispatch(update, &mut inflight).await;
        while inflight.try_join_next().is_some() {}
    }
    let _ = stop.send(());
    match server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "webhook listener failed"),
        Err(e) => tracing::warn!(error = %e, "webhook listener panicked"),
        Ok(Ok(())) => {}
    }
    // The webhook stays registered: Telegram keeps updates until lore is back.
    Ok(inflight)
}

/// The path part of a URL ("/" when it has none), where the listener takes updates.
fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("/");
    if path.is_empty() {
        "/".into()
    } else {
        path.into()
    }
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret_ok = headers
        .get(SECRET_HEADER)
        .is_some_and(|v| v.as_bytes() == hook.secret.as_bytes());
    if !secret_ok {
        return StatusCode::UNAUTHORIZED;
    }
    match serde_json::from_slice::<Update>(&body) {
        Ok(update) => {
            let _ = hook.updates.send(update);
        }
        // Accepted anyway: a refusal would make Telegram resend it forever.
        Err(e) => tracing::warn!(error = %e, "unreadable webhook update skipped"),
    }
    StatusCode::OK
}

/// A fresh secret per start (setWebhook registers it each time): 256 bits from hashers
/// that the standard library seeds from the operating system's randomness.
fn random_secret() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (0..4u64)
        .map(|i| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(i);
            h.write_u128(nanos);
            format!("{:016x}", h.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_path_comes_from_the_url() {
        assert_eq!(
            url_path("https://bot.example.com/hooks/tg?x=1"),
            "/hooks/tg"
        );
        assert_eq!(url_path("https://bot.example.com"), "/");
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 64);
    }
}
