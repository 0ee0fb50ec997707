//! Why a store call failed, and what kind of failure it is. The kind is chosen where the
//! error is made, by the code that knows what went wrong, so callers (an HTTP status, a
//! retry) never read it back out of the message.

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The store cannot be reached now: the server is down or unreachable, or a call timed out.
    Unavailable,
    /// The store is in use: another process holds it, or the server asks for fewer requests.
    Busy,
    /// The store was built differently from what is configured: another embedder, schema,
    /// store format or server version.
    Incompatible,
    /// What was asked is wrong: bad settings, a vector of the wrong size, a query the store
    /// cannot answer.
    Invalid,
    /// The disk holding the store is (nearly) full: the write was refused before it began,
    /// since the engine's memory-mapped files would otherwise fail with a signal.
    NoSpace,
    /// Anything else: a failure inside the store or lore.
    Internal,
}

impl StoreErrorKind {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unavailable | Self::Busy)
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or connecting failed; `path` is the directory or `url/collection`.
    #[error("knowledge store at {path}: {reason}")]
    Open {
        kind: StoreErrorKind,
        path: String,
        reason: String,
    },
    /// A call on an open store failed.
    #[error("knowledge store: {reason}")]
    Backend {
        kind: StoreErrorKind,
        reason: String,
    },
    /// The embedded store's data dir is held by another lore process (one writer per data
    /// dir); who holds it is in the error, for a message that says what to do.
    #[error("{0}")]
    InUse(Box<super::embedded::InUse>),
    /// The blocking task running a call panicked or was cancelled.
    #[error("knowledge store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// A failed call on an open store.
    pub fn backend(kind: StoreErrorKind, reason: impl Into<String>) -> Self {
        Self::Backend {
            kind,
            reason: reason.into(),
        }
    }

    /// A failure inside the store.
    pub fn internal(reason: impl std::fmt::Display) -> Self {
        Self::backend(StoreErrorKind::Internal, reason.to_string())
    }

    /// A failed open of the store at `path`.
    pub fn open(path: impl Into<String>, kind: StoreErrorKind, reason: impl Into<String>) -> Self {
        Self::Open {
            kind,
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            Self::Open { kind, .. } | Self::Backend { kind, .. } => *kind,
            Self::InUse(_) => StoreErrorKind::Busy,
            Self::Task(_) => StoreErrorKind::Internal,
        }
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Task(e.to_string())
    }
}
