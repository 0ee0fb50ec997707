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
    /// gRPC endpoint of the Qdrant server (backend = "qdrant"); https means TLS. Several,
    /// comma-separated: lore uses a healthy one and moves on when one is unreachable.
    pub url: String,
    /// The server collection holding every tenant's chunks.
    pub collection: String,
    /// Timeout of each server request, in seconds.
    pub timeout_secs: u64,
    /// HNSW beam width of dense queries; 0 = lore's default (100).
    pub hnsw_ef: usize,
    /// Shards of a collection lore creates on a Qdrant server; None: Qdrant's default
    /// (one per peer at creation).
    pub shard_number: Option<u32>,
    /// Replicas of every shard of a collection lore creates; lore refuses to start on a
    /// collection with fewer.
    pub replication_factor: u32,
    /// Replicas that must acknowledge a write of a collection lore creates.
    pub write_consistency_factor: u32,
    /// Seconds to wait, before creating the collection, for enough peers to hold
    /// `replication_factor` replicas of every shard.
    pub peer_wait_secs: u64,
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
            let urls = self.urls();
            if urls.is_empty() {
                return Err(bad("url", "names no server".into()));
            }
            for url in urls {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad(
                        "url",
                        format!("{url:?} must start with http:// or https://"),
                    ));
                }
            }
            if self.collection.trim().is_empty() {
                return Err(bad("collection", "must not be empty".into()));
            }
        }
        if self.timeout_secs == 0 {
            return Err(bad("timeout_secs", "must be at least 1".into()));
        }
        if self.shard_number == Some(0) {
            return Err(bad(
                "shard_number",
                "must be at least 1 (leave it unset for Qdrant's default)".into(),
            ));
        }
        if self.replication_factor == 0 {
            return Err(bad("replication_factor", "must be at least 1".into()));
        }
        if self.write_consistency_factor == 0
            || self.write_consistency_factor > self.replication_factor
        {
            return Err(bad(
                "write_consistency_factor",
                format!(
                    "must be between 1 and replication_factor ({})",
                    self.replication_factor
                ),
            ));
        }
        Ok(())
    }

    /// The Qdrant servers of `url`, a comma-separated list, in the order given.
    pub fn urls(&self) -> Vec<String> {
        split_urls(&self.url)
    }
}

/// The items of a comma-separated list of URLs, trimmed, empty ones dropped.
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}
