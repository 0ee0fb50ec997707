//! The embedded store behind lore's [`KnowledgeStore`] trait.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use qdrant_edge::external::serde_json::Value;
use qdrant_edge::{
    FacetRequest, FacetValue, PointId, PointInsertOperations, PointOperations, ScrollRequest,
    UpdateOperation, WithPayloadInterface, WithVector,
};

use super::points::{to_hit, to_point};
use super::query::{run_search, source_filter, tenant_filter};
use super::{EmbeddedStore, engine_error};
use crate::store::schema::{
    SOURCE, SOURCE_HASH, TENANT, check_dense_dimensions, check_query, chunk_point_id,
};
use crate::store::{
    Hit, KnowledgeStore, ScrollPage, SearchRequest, SourceSummary, StoreError, StoreErrorKind,
    StoreStats, StoredChunk, TenantScope,
};

fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[async_trait]
impl KnowledgeStore for EmbeddedStore {
    fn dense_dimension(&self) -> Option<usize> {
        self.dense_dimension
    }

    async fn upsert(&self, chunks: Vec<StoredChunk>) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        check_dense_dimensions(&chunks, self.dense_dimension)?;
        let points = chunks
            .into_iter()
            .map(|c| to_point(c).map(Into::into))
            .collect::<Result<Vec<_>, _>>()?;
        self.write(move |shard| {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
                ))
                .map_err(engine_error)
        })
        .await
    }

    async fn delete_source(&self, tenant: &str, source: &str) -> Result<usize, StoreError> {
        let filter = source_filter(tenant, source);
        self.write(move |shard| {
            let count = shard
                .count(qdrant_edge::CountRequest {
                    filter: Some(filter.clone()),
                    exact: true,
                })
                .map_err(engine_error)?;
            if count > 0 {
                shard
                    .update(UpdateOperation::PointOperation(
                        PointOperations::DeletePointsByFilter(filter),
                    ))
                    .map_err(engine_error)?;
            }
            Ok(count)
        })
        .await
    }

    async fn source_hash(&self, tenant: &str, source: &str) -> Result<Option<String>, StoreError> {
        let id = PointId::Uuid(chunk_point_id(tenant, source, 0));
        self.read(move |shard| {
            let records = shard
                .retrieve(&[id], Some(WithPayloadInterface::Bool(true)), None)
                .map_err(engine_error)?;
            Ok(records.into_iter().next().and_then(|r| {
                r.payload.and_then(|p| {
                    p.0.get(SOURCE_HASH)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
            }))
        })
        .await
    }

    async fn search(&self, request: SearchRequest) -> Result<Vec<Hit>, StoreError> {
        check_query(&request.query, self.dense_dimension)?;
        let search_ef = self.search_ef;
        self.read(move |shard| run_search(shard, request, search_ef))
            .await
    }

    async fn sources(&self, scope: &TenantScope) -> Result<Vec<SourceSummary>, StoreError> {
        let filter = tenant_filter(scope.tenants());
        self.read(move |shard| {
            let response = shard
                .facet(FacetRequest {
                    key: SOURCE.try_into().expect("valid field name"),
                    limit: usize::MAX >> 1,
                    filter: Some(filter),
                    exact: true,
                })
                .map_err(engine_error)?;
            let mut sources: Vec<SourceSummary> = response
                .hits
                .into_iter()
                .filter_map(|hit| match hit.value {
                    FacetValue::Keyword(source) => Some(SourceSummary {
                        source,
                        chunks: hit.count,
                    }),
                    _ => None,
                })
                .collect();
            sources.sort_by(|a, b| a.source.cmp(&b.source));
            Ok(sources)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let path = self.path.clone();
        self.read(move |shard| {
            let info = shard.info();
            Ok(StoreStats {
                chunks: info.points_count,
                indexed_vectors: info.indexed_vectors_count,
                segments: info.segments_count,
                bytes_on_disk: dir_size(&path),
                cluster: None,
            })
        })
        .await
    }

    async fn commit(&self) -> Result<(), StoreError> {
        self.write(|shard| {
            shard.optimize().map_err(engine_error)?;
            shard.flush();
            Ok(())
        })
        .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // The engine does not replay its WAL on open: what is not flushed is lost on a kill.
        // Never refused for space: it only makes what was written durable.
        self.exclusive(|shard| {
            shard.flush();
            Ok(())
        })
        .await
    }

    async fn scroll(
        &self,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<ScrollPage, StoreError> {
        self.read(move |shard| {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset: from.map(PointId::Uuid),
                    limit: Some(limit.max(1)),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(true),
                    order_by: None,
                })
                .map_err(engine_error)?;
            let chunks = records
                .into_iter()
                .map(|r| {
                    let hit = to_hit(r.payload, r.vector, 0.0)?;
                    Ok(StoredChunk {
                        chunk: hit.chunk,
                        dense: hit.dense,
                        sparse: hit.sparse.unwrap_or_default(),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next = match next {
                None => None,
                Some(PointId::Uuid(id)) => Some(id),
                Some(other) => {
                    return Err(StoreError::backend(
                        StoreErrorKind::Incompatible,
                        format!("point id {other:?} was not written by lore (expected a UUID)"),
                    ));
                }
            };
            Ok(ScrollPage { chunks, next })
        })
        .await
    }

    async fn tenant_counts(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        self.read(|shard| {
            let response = shard
                .facet(FacetRequest {
                    key: TENANT.try_into().expect("valid field name"),
                    limit: usize::MAX >> 1,
                    filter: None,
                    exact: true,
                })
                .map_err(engine_error)?;
            Ok(response
                .hits
                .into_iter()
                .filter_map(|hit| match hit.value {
                    FacetValue::Keyword(tenant) => Some((tenant, hit.count)),
                    _ => None,
                })
                .collect())
        })
        .await
    }
}
