//! Classified errors at the vendor boundary: retry and fallback logic match on the variant.

use std::time::Duration;

/// Why a call to an LLM vendor failed, classified by what the caller can do about it.
///
/// `at` names the vendor and URL (never a key or a token); `detail` is the vendor's own words.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Worth retrying later: timeouts, 5xx, 429, connection resets, vendor "busy" codes.
    #[error("{at}: temporary failure: {detail}{}", hint(retry_after))]
    Transient {
        at: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The same request will fail again: bad key (401), bad request (400), quota exhausted, content refused.
    #[error("{at}: request rejected: {detail}")]
    Permanent { at: String, detail: String },
    /// The prompt does not fit the model's context window.
    #[error("{at}: the prompt is too long for the model: {detail}")]
    ContextTooLong { at: String, detail: String },
    /// The vendor answered something we cannot read: garbage, a malformed or truncated stream.
    #[error("{at}: unreadable reply: {detail}")]
    Protocol { at: String, detail: String },
    /// The vendor is paused after repeated failures (the circuit breaker); nothing was sent.
    #[error("{at}: paused after repeated failures; try again in {} s", retry_after.as_secs_f64().ceil())]
    Paused { at: String, retry_after: Duration },
    /// The LLM settings or secrets are wrong; nothing was sent.
    #[error("LLM configuration: {0}")]
    Config(String),
}

fn hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {:.1} s)", d.as_secs_f64()),
        None => String::new(),
    }
}

/// What the resilience layer should do after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Retry the same model, not before `after` when the vendor said so.
    Retry { after: Option<Duration> },
    /// This model cannot serve the request; another model in a fallback chain may.
    NextModel,
    /// Nothing will help: stop and report.
    Stop,
}

/// The class of a vendor error, used by the vendor code tables to build an [`LlmError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Transient,
    Permanent,
    ContextTooLong,
    Protocol,
}

impl LlmError {
    /// Decides retry and fallback; every variant is matched so a new one forces a decision.
    pub fn recovery(&self) -> Recovery {
        match self {
            LlmError::Transient { retry_after, .. } => Recovery::Retry {
                after: *retry_after,
            },
            LlmError::Permanent { .. } => Recovery::NextModel,
            // A model with a larger window may still fit the prompt.
            LlmError::ContextTooLong { .. } => Recovery::NextModel,
            // Garbage is not fixed by asking the same endpoint again.
            LlmError::Protocol { .. } => Recovery::NextModel,
            // Waiting out the pause here would hold the caller; another model may answer now.
            LlmError::Paused { .. } => Recovery::NextModel,
            LlmError::Config(_) => Recovery::Stop,
        }
    }

    /// True when retrying the same model may succeed.
    pub fn is_transient(&self) -> bool {
        self.retry_later().is_some()
    }

    /// When a failure may pass: `Some` with the vendor's hint (if it gave one); `None` when
    /// trying again will not help.
    pub fn retry_later(&self) -> Option<Option<Duration>> {
        if let LlmError::Paused { retry_after, .. } = self {
            return Some(Some(*retry_after));
        }
        match self.recovery() {
            Recovery::Retry { after } => Some(after),
            Recovery::NextModel | Recovery::Stop => None,
        }
    }

    pub(crate) fn of(kind: Kind, at: &str, detail: impl Into<String>) -> Self {
        let (at, detail) = (at.to_string(), detail.into());
        match kind {
            Kind::Transient => LlmError::Transient {
                at,
                detail,
                retry_after: None,
            },
            Kind::Permanent => LlmError::Permanent { at, detail },
            Kind::ContextTooLong => LlmError::ContextTooLong { at, detail },
            Kind::Protocol => LlmError::Protocol { at, detail },
        }
    }

    pub(crate) fn transient(at: &str, detail: impl Into<String>) -> Self {
        Self::of(Kind::Transient, at, detail)
    }

    pub(crate) fn permanent(at: &str, detail: impl Into<String>) -> Self {
        Self::of(Kind::Permanent, at, detail)
    }

    pub(crate) fn protocol(at: &str, detail: impl Into<String>) -> Self {
        Self::of(Kind::Protocol, at, detail)
    }

    pub(crate) fn config(detail: impl Into<String>) -> Self {
        LlmError::Config(detail.into())
    }

    /// Sets the vendor's retry hint on a transient error; other variants are unchanged.
    pub(crate) fn with_retry_after(mut self, hint: Option<Duration>) -> Self {
        if let LlmError::Transient { retry_after, .. } = &mut self {
            *retry_after = hint.or(*retry_after);
        }
        self
    }
}
