//! The manifest beside the engine's files: what a store directory was built with, so a
//! mismatched embedder is caught at open.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub(super) const MANIFEST: &str = "lore-store.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// The store format ([`crate::store::schema::FORMAT`] when current).
    pub format: u32,
    /// Embedder id and dimension of the dense vectors, None for sparse-only.
    pub dense: Option<(String, usize)>,
}

pub(super) fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), String> {
    let text = serde_json::to_string_pretty(manifest).expect("manifest serialises");
    std::fs::write(path, text).map_err(|e| format!("writing {MANIFEST}: {e}"))
}

/// The embedder a manifest names, in words.
pub(super) fn describe(dense: &Option<(String, usize)>) -> String {
    match dense {
        Some((id, dim)) => format!("dense embedder {id} ({dim} dimensions)"),
        None => "no dense embedder (sparse-only)".to_owned(),
    }
}
