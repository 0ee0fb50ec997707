//! A Qdrant server or cluster over gRPC (qdrant-client): the backend for a team that has
//! outgrown one machine. Same collection layout, point ids and BM25 vectors as the
//! embedded store ([`crate::store::schema`]), so search results agree and `lore migrate`
//! can copy between them.

mod collection;
mod errors;
mod knowledge_store;
mod points;
#[cfg(test)]
mod tests;

use std::time::Duration;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CollectionInfo, CountPoints, FacetCounts, Filter, GetCollectionInfoRequest, facet_value,
};

use super::scope_idf::{document_frequency_probes, weighted_scope_query};
use super::{SparseVector, StoreError, StoreErrorKind, TenantScope};
use collection::check_version;
use errors::{call_error, unreachable};
use points::{scope_filter, term_filter};

pub use collection::MIN_SERVER_VERSION;

/// Points per upsert call: well under gRPC's default 4 MiB message limit at 384 dimensions.
const UPSERT_BATCH: usize = 128;
/// Facet limit for "every value" (sources of a tenant, tenants of a collection).
const FACET_ALL: u64 = 1_000_000;

/// Where the server is and how to reach it. The API key comes from `QDRANT_API_KEY` and is
/// never printed (this type deliberately has no `Debug`).
#[derive(Clone)]
pub struct ServerConfig {
    /// gRPC endpoint, e.g. `http://localhost:6334`; `https://` turns TLS on.
    pub url: String,
    pub collection: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// A knowledge store in one collection of a Qdrant server.
pub struct QdrantStore {
    client: Qdrant,
    collection: String,
    dense_dimension: Option<usize>,
    /// `url/collection`, for messages.
    location: String,
    server_version: String,
}

impl QdrantStore {
    /// Connects, checks the server version, creates the collection if it is missing, and
    /// checks its schema against `dense` (the configured embedder's id and dimension).
    pub async fn connect(
        config: ServerConfig,
        dense: Option<(String, usize)>,
    ) -> Result<Self, StoreError> {
        let location = format!("{}/{}", config.url.trim_end_matches('/'), config.collection);
        let open_err = |kind, reason: String| StoreError::open(location.clone(), kind, reason);
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(open_err(
                StoreErrorKind::Invalid,
                format!(
                    "[store] url {:?} must start with http:// or https:// (gRPC, usually port 6334)",
                    config.url
                ),
            ));
        }
        if config.collection.trim().is_empty() {
            return Err(open_err(
                StoreErrorKind::Invalid,
                "[store] collection is empty".into(),
            ));
        }
        let client = Qdrant::from_url(&config.url)
            .api_key(config.api_key.clone())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // The builder's own check runs a blocking runtime; ours below is async and
            // turns a failure into a message that says what to fix.
            .skip_compatibility_check()
            .build()
            .map_err(|e| {
                open_err(
                    StoreErrorKind::Invalid,
                    format!("invalid Qdrant client settings: {e}"),
                )
            })?;
        let health = client.health_check().await.map_err(|e| {
            let (kind, reason) = unreachable(&config.url, &e);
            open_err(kind, reason)
        })?;
        check_version(&health.version).map_err(|r| open_err(StoreErrorKind::Incompatible, r))?;
        let store = Self {
            client,
            collection: config.collection.clone(),
            dense_dimension: dense.as_ref().map(|d| d.1),
            location: location.clone(),
            server_version: health.version,
        };
        store
            .ensure_collection(&dense)
            .await
            .map_err(|(kind, reason)| open_err(kind, reason))?;
        Ok(store)
    }

    /// The version the server reported at connect.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    async fn info(&self) -> Result<CollectionInfo, StoreError> {
        self.client
            .collection_info(GetCollectionInfoRequest {
                collection_name: self.collection.clone(),
            })
            .await
            .map_err(|e| self.call_failed(e))?
            .result
            .ok_or_else(|| {
                StoreError::internal(format!("{}: empty collection info", self.location))
            })
    }

    /// A failed call, with the server's location and the kind its status code says.
    fn call_failed(&self, e: qdrant_client::QdrantError) -> StoreError {
        call_error(&self.location, &e)
    }

    async fn count(&self, filter: Filter) -> Result<usize, StoreError> {
        let response = self
            .client
            .count(CountPoints {
                collection_name: self.collection.clone(),
                filter: Some(filter),
                exact: Some(true),
                ..Default::default()
            })
            .await
            .map_err(|e| self.call_failed(e))?;
        Ok(response.result.map_or(0, |r| r.count as usize))
    }

    /// The BM25 query for a scope, weighted by the IDF counted in the scope alone (the
    /// counts run concurrently).
    async fn weighted_query(
        &self,
        scope: &TenantScope,
        query: &SparseVector,
    ) -> Result<SparseVector, StoreError> {
        if query.indices.is_empty() {
            return Ok(SparseVector::default());
        }
        let chunks = self.count(scope_filter(scope));
        let dfs = futures::future::try_join_all(
            document_frequency_probes(scope, query)
                .into_iter()
                .map(|hashes| self.count(term_filter(scope, hashes))),
        );
        let (chunks, dfs) = futures::try_join!(chunks, dfs)?;
        Ok(weighted_scope_query(scope, query, chunks, &dfs))
    }

    async fn facet(
        &self,
        key: &str,
        filter: Option<Filter>,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let response = self
            .client
            .facet(FacetCounts {
                collection_name: self.collection.clone(),
                key: key.to_owned(),
                filter,
                limit: Some(FACET_ALL),
                exact: Some(true),
                ..Default::default()
            })
            .await
            .map_err(|e| self.call_failed(e))?;
        // A server's keyword index may keep a value whose points were all deleted (a tenant
        // after `lore forget` of its last source) and report it with a count of 0: nothing
        // holds it, so it is not a tenant or source.
        Ok(response
            .hits
            .into_iter()
            .filter(|hit| hit.count > 0)
            .filter_map(|hit| match hit.value?.variant? {
                facet_value::Variant::StringValue(value) => Some((value, hit.count as usize)),
                _ => None,
            })
            .collect())
    }
}
