//! Copying a knowledge base between backends (`lore migrate`): page by page in point-id
//! order, with a checkpoint after every page so an interrupted run resumes where it
//! stopped, then a per-tenant count check. Upserts are idempotent (same point ids on every
//! backend), so a page copied twice after a crash does no harm.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{KnowledgeStore, StoreError};
use crate::progress::Progress;

/// How to run one migration.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Names the source and target (backend and location), so a checkpoint is only resumed
    /// by the same migration.
    pub route: String,
    /// Where progress is recorded; removed once the copy is verified.
    pub checkpoint: PathBuf,
    /// Chunks per page.
    pub batch: usize,
}

/// What a finished migration did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    /// Chunks copied by this run.
    pub copied: usize,
    /// Chunks an earlier, interrupted run had already copied (None for a fresh start).
    pub resumed_after: Option<usize>,
    /// Chunks per tenant, equal in source and target.
    pub tenants: BTreeMap<String, usize>,
}

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("migration checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    #[error("{0}")]
    Incompatible(String),
    #[error("verification failed, the target does not hold what the source holds: {0}")]
    Mismatch(String),
}

/// Progress on disk: the next page to copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    route: String,
    /// First point id of the next page; None before the first page.
    next: Option<uuid::Uuid>,
    /// Every page has been copied; only verification is left.
    finished: bool,
    copied: usize,
}

fn checkpoint_err(path: &Path, reason: impl std::fmt::Display) -> MigrateError {
    MigrateError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn load_checkpoint(path: &Path, route: &str) -> Result<Option<Checkpoint>, MigrateError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| checkpoint_err(path, e))?;
    let found: Checkpoint = serde_json::from_str(&text)
        .map_err(|e| checkpoint_err(path, format!("unreadable ({e}); delete it to start over")))?;
    if found.route != route {
        return Err(checkpoint_err(
            path,
            format!(
                "it belongs to another migration ({}); finish that one or delete the file",
                found.route
            ),
        ));
    }
    Ok(Some(found))
}

/// Written to a temporary file and renamed, so a crash never leaves half a checkpoint.
fn save_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), MigrateError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(checkpoint).expect("checkpoint serialises");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| checkpoint_err(path, e))?;
    }
    std::fs::write(&tmp, text).map_err(|e| checkpoint_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| checkpoint_err(path, e))
}

/// The tenants that hold chunks: a server may still report a tenant emptied by `lore
/// forget` with 0 chunks, and there is nothing of it to copy or compare.
fn holding_tenants(mut counts: BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    counts.retain(|_, chunks| *chunks > 0);
    counts
}

/// Copies every chunk of `source` into `target`, resuming from the checkpoint if an earlier
/// run was interrupted, then checks the chunk count of every tenant.
pub async fn migrate(
    source: &dyn KnowledgeStore,
    target: &dyn KnowledgeStore,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> Result<MigrateReport, MigrateError> {
    if source.dense_dimension() != target.dense_dimension() {
        return Err(MigrateError::Incompatible(format!(
            "the source has dense vectors of {:?} dimensions, the target {:?}",
            source.dense_dimension(),
            target.dense_dimension()
        )));
    }
    let path = &options.checkpoint;
    let resumed = load_checkpoint(path, &options.route)?;
    let resumed_after = resumed.as_ref().map(|c| c.copied);
    let mut state = resumed.unwrap_or(Checkpoint {
        route: options.route.clone(),
        next: None,
        finished: false,
        copied: 0,
    });
    let already = state.copied;
    let total = source.stats().await?.chunks as u64;
    if total == 0 && resumed_after.is_none() {
        return Err(MigrateError::Incompatible(
            "the source holds no chunks; check --from and the [store] settings".into(),
        ));
    }
    progress.begin(total, "chunks");
    progress.resume_at(already as u64);
    while !state.finished {
        let page = source.scroll(state.next, options.batch.max(1)).await?;
        let count = page.chunks.len();
        target.upsert(page.chunks).await?;
        state.copied += count;
        state.next = page.next;
        state.finished = page.next.is_none();
        save_checkpoint(path, &state)?;
        progress.advance(count as u64);
    }
    progress.end();
    target.commit().await?;
    let (wanted, found) = (
        holding_tenants(source.tenant_counts().await?),
        holding_tenants(target.tenant_counts().await?),
    );
    // Whatever the outcome, the next run starts from a clean slate.
    std::fs::remove_file(path).map_err(|e| checkpoint_err(path, e))?;
    if wanted != found {
        let mut tenants: Vec<&String> = wanted.keys().chain(found.keys()).collect();
        tenants.sort();
        tenants.dedup();
        let differences: Vec<String> = tenants
            .into_iter()
            .filter(|t| wanted.get(*t) != found.get(*t))
            .map(|t| {
                format!(
                    "tenant {t:?}: source {} chunks, target {}",
                    wanted.get(t).copied().unwrap_or(0),
                    found.get(t).copied().unwrap_or(0)
                )
            })
            .collect();
        return Err(MigrateError::Mismatch(format!(
            "{} (was the target empty, and were writers stopped during the copy?)",
            differences.join("; ")
        )));
    }
    Ok(MigrateReport {
        copied: state.copied - already,
        resumed_after,
        tenants: wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_without_chunks_is_not_compared() {
        let counts = BTreeMap::from([("t1".to_owned(), 3), ("t9".to_owned(), 0)]);
        assert_eq!(
            holding_tenants(counts),
            BTreeMap::from([("t1".to_owned(), 3)])
        );
    }
}
