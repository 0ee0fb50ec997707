//! Free space before the engine writes. qdrant-edge writes through memory-mapped files, and
//! a write to a mapped page the file system cannot back is not an error but SIGBUS: the
//! process dies with no message, possibly mid-creation. So lore checks first and refuses
//! with [`StoreErrorKind::NoSpace`].

use std::path::Path;

use crate::store::{StoreError, StoreErrorKind};

const MIB: u64 = 1024 * 1024;

/// The engine maps its files at their full size and fills them as points arrive: WAL
/// segments, payload and vector pages of 32 MiB, 4 MiB index pages. What is mapped but not
/// yet written takes no disk space, until a write lands on it; with the file system full,
/// that write is SIGBUS. A fresh sparse-only store maps 146 MiB of which 152 KiB is
/// allocated (qdrant-edge 0.7.2, measured on ext4 and tmpfs); a dense vector adds a 32 MiB
/// chunk.
const FRESH_MAPPED: u64 = 146 * MIB;
const DENSE_CHUNK: u64 = 32 * MIB;

/// Room for one more page or WAL segment beyond what is mapped, as a write fills a file.
const GROWTH: u64 = 32 * MIB;

/// What creating a store needs: everything a fresh store maps, and room to grow.
pub(super) fn create_need(dense: bool) -> u64 {
    FRESH_MAPPED + if dense { DENSE_CHUNK } else { 0 } + GROWTH
}

/// What a write to the store at `dir` needs: the part of its mapped files not yet backed
/// by the disk (a write may land anywhere in it), and room to grow.
pub(super) fn write_need(dir: &Path) -> u64 {
    unbacked(dir) + GROWTH
}

/// Bytes of the files under `dir` that the file system has not allocated yet (their size
/// beyond their allocated blocks: the holes of files mapped at full size).
pub(super) fn unbacked(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len().saturating_sub(m.blocks() * 512))
        .sum()
}

/// Bytes an unprivileged process may still write on the file system holding `path` (or,
/// while `path` does not exist yet, its nearest existing ancestor).
pub(super) fn available(path: &Path) -> std::io::Result<u64> {
    let mut at = path;
    loop {
        match fs4::available_space(at) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => return fs4::available_space("."),
            },
            other => return other,
        }
    }
}

/// Refuses with [`StoreErrorKind::NoSpace`] when the file system holding `path` has less
/// than `need` bytes free. A file system that cannot say (statvfs fails) is not refused:
/// the engine's own error, if any, follows.
pub(super) fn ensure(path: &Path, need: u64) -> Result<(), StoreError> {
    match available(path) {
        Ok(free) if free < need => Err(no_space(path, free, need)),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "free space unknown");
            Ok(())
        }
    }
}

/// The refusal: how much is free where, and how much lore needs.
pub(super) fn no_space(path: &Path, free: u64, need: u64) -> StoreError {
    StoreError::open(
        path.display().to_string(),
        StoreErrorKind::NoSpace,
        format!(
            "disk is full: {} MiB free at {}, lore needs about {} MiB; free space and run again",
            free / MIB,
            path.display(),
            need.div_ceil(MIB)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real statvfs of the temp dir's file system, against thresholds on either side
    /// of what it reports.
    #[test]
    fn the_check_reads_the_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let free = available(dir.path()).unwrap();
        assert!(free > 0);
        ensure(dir.path(), 1).expect("one byte fits");
        let need = free + 1024 * MIB;
        let err = ensure(dir.path(), need).expect_err("more than is free");
        assert_eq!(err.kind(), StoreErrorKind::NoSpace);
        let text = err.to_string();
        assert!(
            text.contains("disk is full")
                && text.contains(&format!("lore needs about {} MiB", need.div_ceil(MIB)))
                && text.contains(&dir.path().display().to_string())
                && text.contains("free space and run again"),
            "{text}"
        );
        // A store not created yet is measured on the file system that will hold it.
        let later = dir.path().join("not/yet/knowledge");
        assert!(available(&later).unwrap() > 0);
        assert_eq!(
            ensure(&later, need)
                .expect_err("the same file system")
                .kind(),
            StoreErrorKind::NoSpace
        );
    }

    /// A file mapped at full size and barely written is mostly unbacked: that is what a
    /// write to it may still claim.
    #[test]
    fn unbacked_counts_the_holes_of_sparse_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("page_0.dat")).unwrap();
        file.set_len(32 * MIB).unwrap();
        std::fs::write(dir.path().join("small"), vec![7u8; 8192]).unwrap();
        let holes = unbacked(dir.path());
        assert!(holes > 31 * MIB && holes <= 32 * MIB, "{holes}");
        assert_eq!(write_need(dir.path()), holes + GROWTH);
        assert!(create_need(true) > create_need(false));
    }
}
