//! The knowledge store behind one trait. Backends: embedded Qdrant (`embedded`) and a
//! Qdrant server or cluster (`qdrant`), both storing the shape in `schema`. No backend type
//! crosses this boundary.

pub mod embedded;
mod error;
pub mod migrate;
mod open;
pub mod qdrant;
pub mod schema;
pub mod scope_idf;
mod settings;
pub mod synthetic;

pub use error::{StoreError, StoreErrorKind};
pub use open::{claim_data_dir, open_claimed, open_store};
pub use schema::{chunk_point_id, lore_terms, tenant_key, tenant_terms};
pub use scope_idf::weighted_scope_query;
pub use settings::{StoreBackend, StoreSettings, split_urls};

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A BM25 term-weight vector (term ids and weights), computed by lore so every backend
/// scores the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// A chunk of a source with everything a citation needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub tenant: String,
    pub source: String,
    /// Position of the chunk within its source, from 0.
    pub index: u32,
    pub text: String,
    /// 1-based PDF page.
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub timestamp: Option<String>,
    /// The document's own title (PDF metadata, a Markdown `# ` heading), when it has one.
    /// Absent in chunks stored before titles were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Byte offsets of the chunk within its section's cleaned text.
    pub start: usize,
    pub end: usize,
    /// Hash of the source content and the chunking settings; unchanged means skip.
    pub source_hash: String,
}

/// A chunk with its vectors, ready to store.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub chunk: Chunk,
    pub dense: Option<Vec<f32>>,
    pub sparse: SparseVector,
}

/// The tenants a query may see. Built in one place by callers (`TenantScope::only`), and
/// every backend turns it into a filter on every query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope(Vec<String>);

impl TenantScope {
    /// Exactly one tenant.
    pub fn only(tenant: &str) -> Self {
        Self(vec![tenant.to_owned()])
    }

    /// One tenant plus the operator's global knowledge base.
    pub fn with_global(tenant: &str, global: &str) -> Self {
        if tenant == global {
            Self::only(tenant)
        } else {
            Self(vec![tenant.to_owned(), global.to_owned()])
        }
    }

    pub fn tenants(&self) -> &[String] {
        &self.0
    }
}

/// What to score against.
#[derive(Debug, Clone)]
pub enum StoreQuery {
    Dense(Vec<f32>),
    Sparse(SparseVector),
    /// Both, fused with reciprocal rank fusion.
    Hybrid {
        dense: Vec<f32>,
        sparse: SparseVector,
        rrf_k: u32,
    },
}

/// One search call.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub scope: TenantScope,
    pub query: StoreQuery,
    pub limit: usize,
    /// Prefetch depth of each side of a hybrid query.
    pub candidates: usize,
    /// Return stored vectors too (MMR needs them).
    pub with_vectors: bool,
}

/// A scored chunk.
#[derive(Debug, Clone)]
pub struct Hit {
    pub score: f32,
    pub chunk: Chunk,
    pub dense: Option<Vec<f32>>,
    pub sparse: Option<SparseVector>,
}

/// A source and its chunk count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub chunks: usize,
}

/// Size figures for `lore stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub chunks: usize,
    pub indexed_vectors: usize,
    pub segments: usize,
    pub bytes_on_disk: u64,
    /// Shards and replicas on a Qdrant server; None for the embedded store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
}

/// How a server collection is spread over the Qdrant cluster (`lore stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStats {
    /// The peer that answered.
    pub peer_id: u64,
    /// The collection's own parameters.
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    /// Distinct peers holding a replica of some shard.
    pub peers: usize,
    pub shards: Vec<ShardStats>,
}

/// One shard and its replicas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardStats {
    pub shard: u32,
    pub replicas: Vec<ReplicaStats>,
}

/// One replica of a shard: where it lives and its state as Qdrant names it ("Active",
/// "Dead", "Partial", ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaStats {
    pub peer: u64,
    pub state: String,
}

/// One page of a full scan in point-id order, for copying a store (`lore migrate`).
#[derive(Debug, Clone)]
pub struct ScrollPage {
    pub chunks: Vec<StoredChunk>,
    /// Where the next page starts (pass it as `from`), or None after the last page.
    pub next: Option<uuid::Uuid>,
}

/// Where knowledge lives. Every query is limited to a `TenantScope`.
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    /// Dimension of the dense vectors, or None for a sparse-only store.
    fn dense_dimension(&self) -> Option<usize>;
    /// Inserts or replaces chunks (ids derive from tenant, source and position).
    async fn upsert(&self, chunks: Vec<StoredChunk>) -> Result<(), StoreError>;
    /// Deletes every chunk of one source in one tenant; returns how many there were.
    async fn delete_source(&self, tenant: &str, source: &str) -> Result<usize, StoreError>;
    /// The content hash a source was stored with, if it is stored.
    async fn source_hash(&self, tenant: &str, source: &str) -> Result<Option<String>, StoreError>;
    /// Scored chunks, best first.
    async fn search(&self, request: SearchRequest) -> Result<Vec<Hit>, StoreError>;
    /// Sources visible in a scope, with chunk counts.
    async fn sources(&self, scope: &TenantScope) -> Result<Vec<SourceSummary>, StoreError>;
    /// Size figures across all tenants (an operator's view).
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Builds indexes after a bulk write and makes everything durable.
    async fn commit(&self) -> Result<(), StoreError>;
    /// Makes every write so far durable, without `commit`'s index build: the cheap commit
    /// point an ingest takes after each few sources, so a crash keeps what was finished.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Up to `limit` stored chunks with their vectors, across all tenants, in point-id order
    /// starting at `from` (inclusive; None for the first page).
    async fn scroll(
        &self,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<ScrollPage, StoreError>;
    /// Chunk count of every tenant (an operator's view, used to verify a migration).
    async fn tenant_counts(&self) -> Result<BTreeMap<String, usize>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_scope_adds_the_global_tenant_once() {
        assert_eq!(TenantScope::with_global("g", "g").tenants(), ["g"]);
        assert_eq!(TenantScope::with_global("a", "g").tenants(), ["a", "g"]);
    }
}
