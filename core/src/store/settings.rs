//! `[store]`: where the knowledge base lives and which backend holds it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::setting::SettingError;

/// `[store]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub data_dir: PathBuf,
    pub backend: StoreBackend,
    /// gRPC endpoint of the Qdrant server (backend = "qdrant"); https means TLS.
    pub url: String,
    /// The server collection holding every tenant's chunks.
    pub collection: String,
    /// Timeout of each server request, in seconds.
    pub timeout_secs: u64,
    /// HNSW beam width of dense queries; 0 = lore's default (100).
    pub hnsw_ef: usize,
}

crate::choice! {
    /// Which `KnowledgeStore` implementation to open.
    pub enum StoreBackend {
        /// Qdrant in-process under data_dir/knowledge.
        Embedded = "embedded",
        /// A Qdrant server or cluster at store.url.
        Qdrant = "qdrant",
    }
}

impl StoreSettings {
    /// Directory of the embedded knowledge store.
    pub fn knowledge_dir(&self) -> PathBuf {
        self.data_dir.join("knowledge")
    }

    /// Checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = SettingError::in_section("store");
        if self.backend == StoreBackend::Qdrant {
            if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
                return Err(bad(
                    "url",
                    format!("{:?} must start with http:// or https://", self.url),
                ));
            }
            if self.collection.trim().is_empty() {
                return Err(bad("collection", "must not be empty".into()));
            }
        }
        if self.timeout_secs == 0 {
            return Err(bad("timeout_secs", "must be at least 1".into()));
        }
        Ok(())
    }
}
