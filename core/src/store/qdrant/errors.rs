//! Server errors in words an operator can act on, each of the kind its gRPC status says.

use qdrant_client::QdrantError;

use crate::store::{StoreError, StoreErrorKind};

// gRPC status codes (the gRPC spec numbers them; tonic's `Code` casts to these).
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const INTERNAL: i32 = 13;
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;
const OUT_OF_RANGE: i32 = 11;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// The gRPC status code of a failed call, if the server (or the transport) gave one.
fn status_code(e: &QdrantError) -> Option<i32> {
    match e {
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => Some(status.code() as i32),
        _ => None,
    }
}

/// What kind of failure a client error is.
pub(super) fn error_kind(e: &QdrantError) -> StoreErrorKind {
    if is_unreachable(e) {
        return StoreErrorKind::Unavailable;
    }
    match status_code(e) {
        // A client-side timeout ends the call as cancelled.
        Some(UNAVAILABLE | DEADLINE_EXCEEDED | CANCELLED) => StoreErrorKind::Unavailable,
        Some(RESOURCE_EXHAUSTED) => StoreErrorKind::Busy,
        // A refused API key is a setting to fix, like any other bad input.
        Some(INVALID_ARGUMENT | OUT_OF_RANGE | UNAUTHENTICATED | PERMISSION_DENIED) => {
            StoreErrorKind::Invalid
        }
        _ => match e {
            QdrantError::InvalidUri(_) => StoreErrorKind::Invalid,
            _ => StoreErrorKind::Internal,
        },
    }
}

/// A failed call on the collection at `location`.
pub(super) fn call_error(location: &str, e: &QdrantError) -> StoreError {
    StoreError::backend(
        error_kind(e),
        format!("Qdrant server {location}: {}", describe_error(e)),
    )
}

/// Why the health check failed, in words an operator can act on. Anything but a refused
/// key means no working server answered. (A real server answers the health check without
/// a key and refuses the first real call instead; [`describe_error`] names the key there.)
pub(super) fn unreachable(url: &str, e: &QdrantError) -> (StoreErrorKind, String) {
    let detail = describe_error(e);
    if refused_key(e) {
        return (StoreErrorKind::Invalid, format!("{url}: {detail}"));
    }
    (
        StoreErrorKind::Unavailable,
        format!(
            "cannot reach a Qdrant server at {url} ({detail}); check [store] url (the gRPC \
             port, usually 6334, not the REST port 6333), that the server is running, and \
             QDRANT_API_KEY"
        ),
    )
}

/// The server refused the call's credentials: no key, a wrong one, or a read-only key
/// for a write.
fn refused_key(e: &QdrantError) -> bool {
    matches!(status_code(e), Some(UNAUTHENTICATED | PERMISSION_DENIED))
}

/// Whether the call found no working server (connection refused or reset, the node down
/// or draining): another server of the cluster may take it. The client reports a failed
/// (re)connection as `Internal` "Failed to connect to …", a broken connection as
/// `Unavailable` or `Unknown` "transport error".
pub(super) fn is_unreachable(e: &QdrantError) -> bool {
    let QdrantError::ResponseError { status } = e else {
        return false;
    };
    match status.code() as i32 {
        UNAVAILABLE => true,
        INTERNAL | UNKNOWN => {
            let message = status.message();
            message.starts_with("Failed to connect to") || message.contains("transport error")
        }
        _ => false,
    }
}

/// A client error in lore's words, without response metadata (which could echo request
/// headers, the key among them). A refused key says what to set.
pub(super) fn describe_error(e: &QdrantError) -> String {
    match e {
        QdrantError::ResponseError { status } if refused_key(e) => format!(
            "the Qdrant server refused the API key ({:?}: {}); set QDRANT_API_KEY to the \
             server's API key (a read-write key: lore writes when it ingests), or unset it \
             for a server without one",
            status.code(),
            status.message()
        ),
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}
