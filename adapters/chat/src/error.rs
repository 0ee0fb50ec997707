//! Failures adapters report to the core, with the kind of failure, so a caller can tell a
//! pause-and-retry from a permanent refusal without reading platform messages.

use std::time::Duration;

/// What kind of failure a [`ChatError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatErrorKind {
    /// The platform asks to slow down; `retry_after` when it said how long.
    RateLimited { retry_after: Option<Duration> },
    /// The bot may not do this (blocked, kicked, missing permission, bad token).
    Forbidden,
    /// The chat, message or file does not exist (any more).
    NotFound,
    /// A network failure or a server-side error; the same request may work later.
    Transient,
    /// Anything else (a malformed request, a refused input, a local limit).
    Other,
}

impl ChatErrorKind {
    /// The kind of an HTTP status code, as platform APIs use them.
    pub fn from_http_status(status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            429 => Self::RateLimited { retry_after },
            401 | 403 => Self::Forbidden,
            404 | 410 => Self::NotFound,
            408 | 500..=599 => Self::Transient,
            _ => Self::Other,
        }
    }
}

/// An adapter-side failure (network, platform API): its kind and a readable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChatError {
    pub kind: ChatErrorKind,
    pub message: String,
}

impl ChatError {
    pub fn new(kind: ChatErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A failure of no particular kind (a refused input, a local limit).
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ChatErrorKind::Other, message)
    }

    /// A failure worth retrying later (network, server error).
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ChatErrorKind::Transient, message)
    }

    /// The failure of an HTTP request answered with `status`.
    pub fn from_http_status(
        status: u16,
        retry_after: Option<Duration>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            ChatErrorKind::from_http_status(status, retry_after),
            message,
        )
    }

    /// True when the same request may succeed later (rate limits and transient failures).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ChatErrorKind::RateLimited { .. } | ChatErrorKind::Transient
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_kinds() {
        let wait = Some(Duration::from_secs(3));
        assert_eq!(
            ChatErrorKind::from_http_status(429, wait),
            ChatErrorKind::RateLimited { retry_after: wait }
        );
        assert_eq!(
            ChatErrorKind::from_http_status(403, None),
            ChatErrorKind::Forbidden
        );
        assert_eq!(
            ChatErrorKind::from_http_status(401, None),
            ChatErrorKind::Forbidden
        );
        assert_eq!(
            ChatErrorKind::from_http_status(404, None),
            ChatErrorKind::NotFound
        );
        for status in [408, 500, 502, 503, 504] {
            assert_eq!(
                ChatErrorKind::from_http_status(status, None),
                ChatErrorKind::Transient,
                "{status}"
            );
        }
        for status in [400, 413, 418] {
            assert_eq!(
                ChatErrorKind::from_http_status(status, None),
                ChatErrorKind::Other,
                "{status}"
            );
        }
    }

    #[test]
    fn errors_read_as_their_message_and_know_if_a_retry_helps() {
        let e = ChatError::from_http_status(503, None, "Discord answered 503");
        assert_eq!(e.to_string(), "Discord answered 503");
        assert!(e.is_retryable());
        assert!(!ChatError::other("too large").is_retryable());
        assert!(!ChatError::from_http_status(403, None, "no").is_retryable());
    }
}
