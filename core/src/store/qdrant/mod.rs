//! A Qdrant server or cluster over gRPC (qdrant-client): the backend for a team that has
//! outgrown one machine. Same collection layout, point ids and BM25 vectors as the
//! embedded store ([`crate::store::schema`]), so search results agree and `lore migrate`
//! can copy between them.

mod cluster;
mod collection;
mod errors;
mod knowledge_store;
mod points;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qdrant_client::qdrant::{
    CollectionInfo, CountPoints, FacetCounts, Filter, GetCollectionInfoRequest, facet_value,
};
use qdrant_client::{Qdrant, QdrantError};

use super::scope_idf::{document_frequency_probes, weighted_scope_query};
use super::{SparseVector, StoreError, StoreErrorKind, TenantScope, split_urls};
use collection::check_version;
use errors::{call_error, describe_error, is_unreachable, unreachable};
use points::{scope_filter, term_filter};

pub use cluster::CollectionLayout;
pub use collection::MIN_SERVER_VERSION;

/// Points per upsert call: well under gRPC's default 4 MiB message limit at 384 dimensions.
const UPSERT_BATCH: usize = 128;
/// Facet limit for "every value" (sources of a tenant, tenants of a collection).
const FACET_ALL: u64 = 1_000_000;

/// Where the server is and how to reach it. The API key comes from `QDRANT_API_KEY` and is
/// never printed (this type deliberately has no `Debug`).
#[derive(Clone)]
pub struct ServerConfig {
    /// gRPC endpoint, e.g. `http://localhost:6334`; `https://` turns TLS on. Several nodes
    /// of one cluster, comma-separated: lore uses a healthy one and moves to the next when a
    /// call finds it unreachable.
    pub url: String,
    pub collection: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// How a collection lore creates is spread over the cluster.
    pub layout: CollectionLayout,
}

/// One server of the configured list.
struct Server {
    url: String,
    client: Qdrant,
}

/// A knowledge store in one collection of a Qdrant server.
pub struct QdrantStore {
    /// The configured servers, in order; `current` is the one calls go to.
    servers: Vec<Server>,
    current: AtomicUsize,
    collection: String,
    layout: CollectionLayout,
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
        let urls = split_urls(&config.url);
        let location = format!("{}/{}", urls.join(","), config.collection);
        let open_err = |kind, reason: String| StoreError::open(location.clone(), kind, reason);
        if urls.is_empty() {
            return Err(open_err(
                StoreErrorKind::Invalid,
                "[store] url names no server".into(),
            ));
        }
        if let Some(url) = urls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(open_err(
                StoreErrorKind::Invalid,
                format!(
                    "[store] url {url:?} must start with http:// or https:// (gRPC, usually port 6334)"
                ),
            ));
        }
        if config.collection.trim().is_empty() {
            return Err(open_err(
                StoreErrorKind::Invalid,
                "[store] collection is empty".into(),
            ));
        }
        let mut servers = Vec::with_capacity(urls.len());
        for url in urls {
            let client = Qdrant::from_url(&url)
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
            servers.push(Server { url, client });
        }
        // The first server that answers, in the order given.
        let mut unreachable_ones = Vec::new();
        let mut healthy = None;
        for (at, server) in servers.iter().enumerate() {
            match server.client.health_check().await {
                Ok(health) => {
                    healthy = Some((at, health));
                    break;
                }
                Err(e) => {
                    let (kind, reason) = unreachable(&server.url, &e);
                    if kind != StoreErrorKind::Unavailable {
                        return Err(open_err(kind, reason));
                    }
                    if servers.len() > 1 {
                        tracing::warn!(url = %server.url, error = %describe_error(&e),
                            "the Qdrant server does not answer; trying the next one");
                    }
                    unreachable_ones.push(reason);
                }
            }
        }
        let Some((at, health)) = healthy else {
            return Err(open_err(
                StoreErrorKind::Unavailable,
                unreachable_ones.join("; "),
            ));
        };
        check_version(&health.version).map_err(|r| open_err(StoreErrorKind::Incompatible, r))?;
        let store = Self {
            servers,
            current: AtomicUsize::new(at),
            collection: config.collection.clone(),
            layout: config.layout,
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

    /// Runs `call` on the current server. When it finds that server unreachable and other
    /// servers are configured, moves to the next one (one warning line per move) and runs
    /// it there, trying each server at most once. Reads and writes alike: every write lore
    /// makes is idempotent (upserts by id, deletes by filter), so one repeated on another
    /// node after a broken connection does no harm.
    pub(super) async fn call<T, F, Fut>(&self, call: F) -> Result<T, QdrantError>
    where
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        let count = self.servers.len();
        let mut at = self.current.load(Ordering::Acquire) % count;
        let mut tried = 1;
        loop {
            match call(self.servers[at].client.clone()).await {
                Err(e) if tried < count && is_unreachable(&e) => {
                    let next = (at + 1) % count;
                    // Concurrent calls may see the same failure; the one that moves logs.
                    if self
                        .current
                        .compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        tracing::warn!(
                            from = %self.servers[at].url,
                            to = %self.servers[next].url,
                            error = %describe_error(&e),
                            "the Qdrant server is unreachable; moving to the next one"
                        );
                    }
                    at = next;
                    tried += 1;
                }
                other => return other,
            }
        }
    }

    /// The URL calls go to now.
    pub fn current_url(&self) -> &str {
        &self.servers[self.current.load(Ordering::Acquire) % self.servers.len()].url
    }

    /// The version the server reported at connect.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    async fn info(&self) -> Result<CollectionInfo, StoreError> {
        let request = GetCollectionInfoRequest {
            collection_name: self.collection.clone(),
        };
        self.call(|c| {
            let request = request.clone();
            async move { c.collection_info(request).await }
        })
        .await
        .map_err(|e| self.call_failed(e))?
        .result
        .ok_or_else(|| StoreError::internal(format!("{}: empty collection info", self.location)))
    }

    /// A failed call, with the server's location and the kind its status code says.
    fn call_failed(&self, e: qdrant_client::QdrantError) -> StoreError {
        call_error(&self.location, &e)
    }

    async fn count(&self, filter: Filter) -> Result<usize, StoreError> {
        let request = CountPoints {
            collection_name: self.collection.clone(),
            filter: Some(filter),
            exact: Some(true),
            ..Default::default()
        };
        let response = self
            .call(|c| {
                let request = request.clone();
                async move { c.count(request).await }
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
        let request = FacetCounts {
            collection_name: self.collection.clone(),
            key: key.to_owned(),
            filter,
            limit: Some(FACET_ALL),
            exact: Some(true),
            ..Default::default()
        };
        let response = self
            .call(|c| {
                let request = request.clone();
                async move { c.facet(request).await }
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
