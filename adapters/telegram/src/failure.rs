//! Telegram's failures as the core's [`ChatError`]s: the kind from teloxide's error (which
//! keeps Telegram's `retry_after` and description, not the numeric `error_code`), the text
//! without the token.

use lore_chat::{ChatError, ChatErrorKind};
use teloxide::{ApiError, DownloadError, RequestError};

use crate::redact::Redactor;

/// The kind of a failed Bot API request.
pub fn kind(e: &RequestError) -> ChatErrorKind {
    match e {
        RequestError::RetryAfter(after) => ChatErrorKind::RateLimited {
            retry_after: Some(after.duration()),
        },
        RequestError::Network(_) | RequestError::Io(_) => ChatErrorKind::Transient,
        RequestError::Api(api) => api_kind(api),
        RequestError::MigrateToChatId(_) | RequestError::InvalidJson { .. } => ChatErrorKind::Other,
    }
}

/// Telegram's descriptions start with the HTTP reason of their `error_code` ("Forbidden:",
/// "Bad Request: chat not found"); teloxide keeps only the description.
fn api_kind(e: &ApiError) -> ChatErrorKind {
    let description = match e {
        ApiError::Unknown(text) => text.clone(),
        other => other.to_string(),
    };
    let lower = description.to_lowercase();
    if matches!(e, ApiError::InvalidToken)
        || lower.starts_with("forbidden")
        || lower.starts_with("unauthorized")
        || lower.contains("not enough rights")
        || lower.contains("need administrator rights")
    {
        ChatErrorKind::Forbidden
    } else if lower.contains("not found") {
        ChatErrorKind::NotFound
    } else if lower.starts_with("too many requests") {
        ChatErrorKind::RateLimited { retry_after: None }
    } else if lower.starts_with("internal server error")
        || lower.starts_with("bad gateway")
        || lower.starts_with("gateway timeout")
        || lower.starts_with("service unavailable")
    {
        ChatErrorKind::Transient
    } else {
        ChatErrorKind::Other
    }
}

/// A failed request as the core sees it.
pub fn chat_error(e: &RequestError, redactor: &Redactor) -> ChatError {
    ChatError::new(kind(e), redactor.clean(e))
}

/// A failed file download (the network or the local write): worth a retry.
pub fn download_error(e: &DownloadError, redactor: &Redactor) -> ChatError {
    ChatError::transient(redactor.clean(e))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use teloxide::types::Seconds;

    use super::*;

    #[test]
    fn telegram_failures_map_to_kinds() {
        assert_eq!(
            kind(&RequestError::RetryAfter(Seconds::from_seconds(7))),
            ChatErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        for forbidden in [
            ApiError::BotBlocked,
            ApiError::BotKicked,
            ApiError::BotKickedFromSupergroup,
            ApiError::CantInitiateConversation,
            ApiError::NotEnoughRightsToPostMessages,
            ApiError::InvalidToken,
            ApiError::Unknown("Forbidden: bot is not a member of the channel chat".into()),
        ] {
            assert_eq!(
                kind(&RequestError::Api(forbidden.clone())),
                ChatErrorKind::Forbidden,
                "{forbidden:?}"
            );
        }
        for missing in [
            ApiError::ChatNotFound,
            ApiError::MessageToEditNotFound,
            ApiError::MessageToReplyNotFound,
            ApiError::Unknown("Bad Request: message thread not found".into()),
        ] {
            assert_eq!(
                kind(&RequestError::Api(missing.clone())),
                ChatErrorKind::NotFound,
                "{missing:?}"
            );
        }
        assert_eq!(
            kind(&RequestError::Api(ApiError::Unknown(
                "Internal Server Error: restart".into()
            ))),
            ChatErrorKind::Transient
        );
        assert_eq!(
            kind(&RequestError::Api(ApiError::MessageIsTooLong)),
            ChatErrorKind::Other
        );
        let io = RequestError::Io(std::sync::Arc::new(std::io::Error::other("reset")));
        assert_eq!(kind(&io), ChatErrorKind::Transient);
    }

    #[test]
    fn the_message_never_holds_the_token() {
        let redactor = Redactor::new("123:secret-token-value");
        let e = RequestError::Api(ApiError::Unknown(
            "Forbidden: 123:secret-token-value".into(),
        ));
        let error = chat_error(&e, &redactor);
        assert_eq!(error.kind, ChatErrorKind::Forbidden);
        assert!(!error.message.contains("secret-token-value"), "{error}");
    }
}
