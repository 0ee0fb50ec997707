//! An interrupted store creation (killed, or cut off by a full disk) leaves engine files
//! without the manifest, which creation writes last; the engine then refuses to create a
//! store over them ("path already contains segment data") and there is none to load. Such a
//! directory is moved aside, never deleted, and a fresh store is created in its place.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use super::LOCK;
use super::manifest::MANIFEST;
use crate::store::{StoreError, StoreErrorKind};

/// Moves `dir` aside to `<dir>.partial-<unix seconds>` when it holds engine files but no
/// manifest (a creation that never finished); returns where it went. A directory with a
/// manifest (a complete store, however it fares at open) or with nothing of the engine's
/// stays. The caller holds the data dir's lock, so no other lore is creating it now.
pub(super) fn move_aside_partial(dir: &Path) -> Result<Option<PathBuf>, StoreError> {
    let fail = |kind, reason: String| StoreError::open(dir.display().to_string(), kind, reason);
    if dir.join(MANIFEST).exists() {
        return Ok(None);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(StoreErrorKind::Internal, format!("reading it: {e}"))),
    };
    let mut engine_files = false;
    for entry in entries {
        let entry =
            entry.map_err(|e| fail(StoreErrorKind::Internal, format!("reading it: {e}")))?;
        if entry.file_name() != LOCK {
            engine_files = true;
            break;
        }
    }
    if !engine_files {
        return Ok(None);
    }
    // A lore from before the data dir lock holds only this one; never move a store from
    // under a process that has it open.
    if let Ok(file) = File::options().write(true).open(dir.join(LOCK))
        && let Err(TryLockError::WouldBlock) = file.try_lock()
    {
        return Err(fail(
            StoreErrorKind::Busy,
            "another lore process has this store open; stop it and run again".to_owned(),
        ));
    }
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = dir.file_name().map_or_else(
        || "knowledge".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut aside = dir.with_file_name(format!("{name}.partial-{seconds}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.with_file_name(format!("{name}.partial-{seconds}-{n}"));
    }
    std::fs::rename(dir, &aside).map_err(|e| {
        fail(
            StoreErrorKind::Internal,
            format!(
                "moving an unfinished store aside to {}: {e}",
                aside.display()
            ),
        )
    })?;
    tracing::warn!(
        store = %dir.display(),
        moved_to = %aside.display(),
        "the knowledge store's creation was interrupted (engine files without {MANIFEST}); \
         moved them aside and creating the store afresh (delete {} once you no longer need it)",
        aside.display()
    );
    Ok(Some(aside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_files_without_a_manifest_are_moved_aside_and_a_store_is_left_alone() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("knowledge");
        assert_eq!(move_aside_partial(&dir).unwrap(), None, "no directory");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LOCK), b"").unwrap();
        assert_eq!(
            move_aside_partial(&dir).unwrap(),
            None,
            "only the lock file"
        );

        std::fs::create_dir_all(dir.join("segments/abc")).unwrap();
        std::fs::write(dir.join("segments/abc/data"), b"half a segment").unwrap();
        let aside = move_aside_partial(&dir).unwrap().expect("moved aside");
        assert!(!dir.exists());
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("knowledge.partial-"),
            "{}",
            aside.display()
        );
        assert_eq!(
            std::fs::read(aside.join("segments/abc/data")).unwrap(),
            b"half a segment",
            "kept, not deleted"
        );

        std::fs::create_dir_all(dir.join("segments/abc")).unwrap();
        std::fs::write(dir.join(MANIFEST), b"{}").unwrap();
        assert_eq!(
            move_aside_partial(&dir).unwrap(),
            None,
            "a manifest: a store"
        );
        assert!(dir.join("segments/abc").exists());
    }
}
