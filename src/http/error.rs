//! API errors: a status and a message fit to show, as `{"error": {"message", "type"}}`
//! (the shape OpenAI clients expect, used by every route).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Cut;
use lore_core::bot::BotError;
use lore_core::store::StoreErrorKind;

/// Retry-After of a transient vendor failure that came with no hint of its own.
const UPSTREAM_RETRY_SECS: u64 = 5;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds for a Retry-After header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
    }

    pub fn shutting_down() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "lore is shutting down; try again in a moment",
        );
        e.retry_after = Some(5);
        e
    }
}

impl From<Cut> for ApiError {
    fn from(cut: Cut) -> Self {
        match cut {
            Cut::TimedOut => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the request took longer than http.request_timeout_secs",
            ),
            Cut::ShuttingDown => Self::shutting_down(),
        }
    }
}

impl From<BotError> for ApiError {
    fn from(e: BotError) -> Self {
        let (status, kind) = match &e {
            BotError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            BotError::NotAllowed(_) => (StatusCode::FORBIDDEN, "permission_error"),
            BotError::Quota(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            BotError::Usage(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            BotError::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_file"),
            BotError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            // Other uploads hold the whole `ingest.max_inflight_mib` budget.
            BotError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "uploads_busy"),
            BotError::Ingest(_) => (StatusCode::UNPROCESSABLE_ENTITY, "ingest_error"),
            BotError::Answer(a) if a.retry_later().is_some() => {
                (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable")
            }
            BotError::Answer(_) | BotError::Platform(_) => {
                (StatusCode::BAD_GATEWAY, "upstream_error")
            }
            // A full disk does not pass by itself: someone must free space (RFC 4918's 507).
            BotError::Store(s) if s.kind() == StoreErrorKind::NoSpace => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            // A store that is down or busy comes back; tell the client when to retry.
            BotError::Store(s) if s.kind().is_transient() => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            BotError::Store(_) | BotError::Memory(_) | BotError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
        };
        let retry_after = match &e {
            BotError::RateLimited(r) => Some(r.seconds()),
            BotError::Busy { retry_after_secs } => Some(*retry_after_secs),
            // The vendor's own hint, rounded up; without one, a short wait a client can honour.
            BotError::Answer(a) => a.retry_later().map(|hint| {
                hint.map_or(UPSTREAM_RETRY_SECS, |d| {
                    d.as_secs_f64().ceil().max(1.0) as u64
                })
            }),
            BotError::Store(s) if s.kind().is_transient() => Some(UPSTREAM_RETRY_SECS),
            _ => None,
        };
        Self {
            status,
            kind,
            message: e.to_string(),
            retry_after,
        }
    }
}

impl From<lore_core::store::StoreError> for ApiError {
    fn from(e: lore_core::store::StoreError) -> Self {
        BotError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let body = json!({"error": {"message": self.message, "type": self.kind}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lore_core::store::StoreError;

    #[test]
    fn a_store_that_is_down_or_busy_is_503_with_retry_after() {
        for kind in [StoreErrorKind::Unavailable, StoreErrorKind::Busy] {
            let e = ApiError::from(StoreError::backend(kind, "down"));
            assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE, "{kind:?}");
            assert_eq!(e.retry_after, Some(UPSTREAM_RETRY_SECS));
        }
        for kind in [StoreErrorKind::Incompatible, StoreErrorKind::Internal] {
            let e = ApiError::from(StoreError::backend(kind, "broken"));
            assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR, "{kind:?}");
            assert_eq!(e.retry_after, None);
        }
    }

    #[test]
    fn a_full_disk_is_507_without_retry_after() {
        let e = ApiError::from(StoreError::backend(
            StoreErrorKind::NoSpace,
            "disk is full: 2 MiB free at /data, lore needs about 64 MiB; free space and run again",
        ));
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(e.kind, "insufficient_storage");
        assert_eq!(e.retry_after, None);
        assert!(e.message.contains("disk is full"), "{}", e.message);
    }
}
