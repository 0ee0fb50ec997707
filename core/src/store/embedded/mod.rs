//! Embedded Qdrant (qdrant-edge): the default store, persistent under the data dir.
//! The engine is synchronous, so every call runs on `spawn_blocking`.

mod knowledge_store;
mod layout;
mod lock;
mod manifest;
mod points;
mod query;
mod recover;
mod space;
#[cfg(test)]
mod tests;
mod upgrade;

pub use lock::{DataDirLock, Holder, InUse, LOCK_FILE};

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use qdrant_edge::{EdgeConfig, EdgeShard, OperationError};

use super::schema::FORMAT;
use super::{StoreError, StoreErrorKind};
use layout::{DEFAULT_SEARCH_EF, create_payload_indexes, edge_config, with_current_layout};
use manifest::{MANIFEST, Manifest, describe, write_manifest};

/// Held for as long as a store is open, so a second open (another lore process, or the
/// same one) is refused as busy before the engine or the format upgrade touches anything.
/// `lore` itself takes the data dir's [`DataDirLock`] first; this one also guards stores
/// opened on their own (bench, eval, tests).
const LOCK: &str = "lore-store.lock";

/// The embedded Qdrant store.
pub struct EmbeddedStore {
    path: PathBuf,
    dense_dimension: Option<usize>,
    // The engine's flush asserts it holds its WAL lock uncontended, so writes and flushes
    // are serialised here while searches share the lock.
    shard: Arc<RwLock<EdgeShard>>,
    /// HNSW beam width for dense queries.
    search_ef: usize,
    /// The directory lock; released when the store is dropped.
    _lock: File,
    /// The data dir's lock when opened as lore opens it ([`Self::open_in_data_dir`]).
    _data_dir: Option<Arc<DataDirLock>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`. `dense` is the configured embedder's id and
    /// dimension; it must match what the store was built with.
    pub fn open(path: &Path, dense: Option<(String, usize)>) -> Result<Self, StoreError> {
        let open_err =
            |kind, reason: String| StoreError::open(path.display().to_string(), kind, reason);
        let internal = |reason: String| open_err(StoreErrorKind::Internal, reason);
        let engine = |e: OperationError| open_err(engine_kind(&e), e.to_string());
        let wanted = Manifest {
            format: FORMAT,
            dense: dense.clone(),
        };
        std::fs::create_dir_all(path).map_err(|e| internal(e.to_string()))?;
        let lock = lock_dir(path).map_err(|(kind, reason)| open_err(kind, reason))?;
        let manifest_path = path.join(MANIFEST);
        let shard = if manifest_path.is_file() {
            let text = std::fs::read_to_string(&manifest_path)
                .map_err(|e| internal(format!("reading {MANIFEST}: {e}")))?;
            let found: Manifest = serde_json::from_str(&text).map_err(|e| {
                open_err(
                    StoreErrorKind::Incompatible,
                    format!("{MANIFEST} is corrupt: {e}"),
                )
            })?;
            let upgrade = (1..FORMAT).contains(&found.format) && found.dense == wanted.dense;
            if found != wanted && !upgrade {
                return Err(open_err(
                    StoreErrorKind::Incompatible,
                    format!(
                        "it was built with {} but {} is configured; use another data dir \
                         (--data-dir) for this embedder, or re-ingest into a fresh one",
                        describe(&found.dense),
                        describe(&wanted.dense)
                    ),
                ));
            }
            // Loading reopens the WAL and may map a fresh segment: on a full disk the first
            // write to it would be SIGBUS, so even a read-only command checks first.
            space::ensure(path, space::write_need(path))?;
            let saved = EdgeConfig::load(path).transpose().map_err(engine)?;
            let updated = saved.as_ref().and_then(with_current_layout);
            let layout_changed = updated.is_some();
            let shard = EdgeShard::load(path, updated).map_err(engine)?;
            if layout_changed {
                tracing::info!(
                    store = %path.display(),
                    "index layout updated; the next ingest rebuilds the dense index"
                );
            }
            if upgrade {
                let upgrade_err = |e: StoreError| open_err(e.kind(), e.to_string());
                let mut format = found.format;
                if format == 1 {
                    tracing::info!(store = %path.display(), "keying BM25 dimensions per tenant (store format 1 to 2)");
                    let points = upgrade::rekey_sparse(&shard).map_err(upgrade_err)?;
                    format = 2;
                    let manifest = Manifest {
                        format,
                        dense: dense.clone(),
                    };
                    write_manifest(&manifest_path, &manifest).map_err(internal)?;
                    tracing::info!(store = %path.display(), points, "store format 2");
                }
                if format == 2 {
                    tracing::info!(store = %path.display(), "moving BM25 to lore's per-scope IDF (store format 2 to 3)");
                    let points = upgrade::drop_engine_idf(&shard).map_err(upgrade_err)?;
                    write_manifest(&manifest_path, &wanted).map_err(internal)?;
                    tracing::info!(store = %path.display(), points, "store format 3");
                }
            }
            shard
        } else {
            // Engine files over which creation was cut off are moved aside by
            // `open_in_data_dir`; here the directory holds at most the lock file.
            space::ensure(path, space::create_need(dense.is_some()))?;
            let shard =
                EdgeShard::new(path, edge_config(dense.as_ref().map(|d| d.1))).map_err(engine)?;
            create_payload_indexes(&shard).map_err(engine)?;
            write_manifest(&manifest_path, &wanted).map_err(internal)?;
            shard
        };
        Ok(Self {
            path: path.to_owned(),
            dense_dimension: dense.map(|d| d.1),
            shard: Arc::new(RwLock::new(shard)),
            search_ef: DEFAULT_SEARCH_EF,
            _lock: lock,
            _data_dir: None,
        })
    }

    /// Opens (or creates) the store at `path` inside a data dir whose lock the caller holds
    /// (`lore` takes it before anything else): a creation that was interrupted is moved
    /// aside first, then the store opens as [`Self::open`] does and keeps the lock.
    pub fn open_in_data_dir(
        lock: Arc<DataDirLock>,
        path: &Path,
        dense: Option<(String, usize)>,
    ) -> Result<Self, StoreError> {
        recover::move_aside_partial(path)?;
        let mut store = Self::open(path, dense)?;
        store._data_dir = Some(lock);
        Ok(store)
    }

    /// Sets the HNSW beam width of dense queries (`[store] hnsw_ef`; 0 keeps lore's default,
    /// 100). It never goes below the number of candidates asked for.
    pub fn with_search_ef(mut self, ef: usize) -> Self {
        self.search_ef = if ef > 0 { ef } else { DEFAULT_SEARCH_EF };
        self
    }

    /// Runs `f` on a blocking thread with shared access to the shard.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EdgeShard) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shard = self.shard.clone();
        tokio::task::spawn_blocking(move || {
            let guard = shard.read().map_err(|_| poisoned())?;
            f(&guard)
        })
        .await?
    }

    /// Runs `f` on a blocking thread with exclusive access to the shard, after checking
    /// there is room for what a write may map (see `space`).
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EdgeShard) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        self.exclusive(move |shard| {
            space::ensure(&path, space::write_need(&path))?;
            f(shard)
        })
        .await
    }

    /// Runs `f` on a blocking thread with exclusive access to the shard.
    async fn exclusive<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EdgeShard) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shard = self.shard.clone();
        tokio::task::spawn_blocking(move || {
            let guard = shard.write().map_err(|_| poisoned())?;
            f(&guard)
        })
        .await?
    }
}

/// Takes the store directory's lock without waiting.
fn lock_dir(path: &Path) -> Result<File, (StoreErrorKind, String)> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join(LOCK))
        .map_err(|e| (StoreErrorKind::Internal, format!("opening {LOCK}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err((
            StoreErrorKind::Busy,
            "it is in use by another lore process (lore serve?); one lore process uses a \
             store at a time: stop that one, or use the Qdrant server backend for several"
                .to_owned(),
        )),
        Err(TryLockError::Error(e)) => {
            Err((StoreErrorKind::Internal, format!("locking {LOCK}: {e}")))
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::internal("a previous store operation panicked")
}

/// An engine error as a store error of the kind it is.
fn engine_error(e: OperationError) -> StoreError {
    StoreError::backend(engine_kind(&e), e.to_string())
}

fn engine_kind(e: &OperationError) -> StoreErrorKind {
    match e {
        OperationError::Timeout { .. } => StoreErrorKind::Unavailable,
        OperationError::WrongVectorDimension { .. }
        | OperationError::VectorNameNotExists { .. }
        | OperationError::ValidationError { .. }
        | OperationError::WrongSparse
        | OperationError::WrongMulti => StoreErrorKind::Invalid,
        // The engine reports I/O failures as text only; ENOSPC is the one a person can fix.
        OperationError::ServiceError { description, .. }
            if description.contains("No space left on device") =>
        {
            StoreErrorKind::NoSpace
        }
        _ => StoreErrorKind::Internal,
    }
}
