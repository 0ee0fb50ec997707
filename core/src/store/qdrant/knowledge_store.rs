//! The server store behind lore's [`KnowledgeStore`] trait.

use std::collections::BTreeMap;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    DeletePoints, GetPoints, PointsSelector, PrefetchQuery, Query, QueryPoints, Rrf, ScrollPoints,
    UpsertPoints, points_selector, query, value,
};

use super::points::{
    dense_input, nearest, parse_id, scope_filter, source_filter, sparse_input, split_vectors,
    to_chunk, to_point, uuid_id, with_payload, with_vectors,
};
use super::{QdrantStore, UPSERT_BATCH};
use crate::store::schema::{
    DENSE, SOURCE, SOURCE_HASH, SPARSE, TENANT, check_dense_dimensions, check_query, chunk_point_id,
};
use crate::store::{
    Hit, KnowledgeStore, ScrollPage, SearchRequest, SourceSummary, StoreError, StoreQuery,
    StoreStats, StoredChunk, TenantScope,
};

#[async_trait]
impl KnowledgeStore for QdrantStore {
    fn dense_dimension(&self) -> Option<usize> {
        self.dense_dimension
    }

    async fn upsert(&self, chunks: Vec<StoredChunk>) -> Result<(), StoreError> {
        check_dense_dimensions(&chunks, self.dense_dimension)?;
        let mut points = chunks
            .into_iter()
            .map(to_point)
            .collect::<Result<Vec<_>, _>>()?;
        while !points.is_empty() {
            let rest = points.split_off(points.len().min(UPSERT_BATCH));
            let request = UpsertPoints {
                collection_name: self.collection.clone(),
                // Searches right after ingest must see the chunks.
                wait: Some(true),
                points,
                ..Default::default()
            };
            self.call(|c| {
                let request = request.clone();
                async move { c.upsert_points(request).await }
            })
            .await
            .map_err(|e| self.call_failed(e))?;
            points = rest;
        }
        Ok(())
    }

    async fn delete_source(&self, tenant: &str, source: &str) -> Result<usize, StoreError> {
        let filter = source_filter(tenant, source);
        let count = self.count(filter.clone()).await?;
        if count > 0 {
            let request = DeletePoints {
                collection_name: self.collection.clone(),
                wait: Some(true),
                points: Some(PointsSelector {
                    points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                        filter,
                    )),
                }),
                ..Default::default()
            };
            self.call(|c| {
                let request = request.clone();
                async move { c.delete_points(request).await }
            })
            .await
            .map_err(|e| self.call_failed(e))?;
        }
        Ok(count)
    }

    async fn source_hash(&self, tenant: &str, source: &str) -> Result<Option<String>, StoreError> {
        let request = GetPoints {
            collection_name: self.collection.clone(),
            ids: vec![uuid_id(chunk_point_id(tenant, source, 0))],
            with_payload: with_payload(true),
            with_vectors: with_vectors(false),
            ..Default::default()
        };
        let response = self
            .call(|c| {
                let request = request.clone();
                async move { c.get_points(request).await }
            })
            .await
            .map_err(|e| self.call_failed(e))?;
        Ok(response.result.into_iter().next().and_then(|point| {
            match point.payload.get(SOURCE_HASH).and_then(|v| v.kind.clone()) {
                Some(value::Kind::StringValue(hash)) => Some(hash),
                _ => None,
            }
        }))
    }

    async fn search(&self, request: SearchRequest) -> Result<Vec<Hit>, StoreError> {
        check_query(&request.query, self.dense_dimension)?;
        let filter = scope_filter(&request.scope);
        let mut query = QueryPoints {
            collection_name: self.collection.clone(),
            // The tenant filter on the fused query too, not only on the prefetches.
            filter: Some(filter.clone()),
            limit: Some(request.limit as u64),
            with_payload: with_payload(true),
            with_vectors: with_vectors(request.with_vectors),
            ..Default::default()
        };
        match request.query {
            StoreQuery::Dense(v) => {
                query.query = nearest(dense_input(v));
                query.using = Some(DENSE.to_owned());
            }
            StoreQuery::Sparse(v) => {
                let weighted = self.weighted_query(&request.scope, &v).await?;
                query.query = nearest(sparse_input(weighted));
                query.using = Some(SPARSE.to_owned());
            }
            StoreQuery::Hybrid {
                dense,
                sparse,
                rrf_k,
            } => {
                let depth = request.candidates.max(request.limit) as u64;
                let side = |input, using: &str| PrefetchQuery {
                    query: nearest(input),
                    using: Some(using.to_owned()),
                    filter: Some(filter.clone()),
                    limit: Some(depth),
                    ..Default::default()
                };
                let weighted = self.weighted_query(&request.scope, &sparse).await?;
                query.prefetch = vec![
                    side(dense_input(dense), DENSE),
                    side(sparse_input(weighted), SPARSE),
                ];
                query.query = Some(Query {
                    variant: Some(query::Variant::Rrf(Rrf {
                        k: Some(rrf_k.max(1)),
                        weights: vec![],
                    })),
                });
            }
        }
        let response = self
            .call(|c| {
                let query = query.clone();
                async move { c.query(query).await }
            })
            .await
            .map_err(|e| self.call_failed(e))?;
        response
            .result
            .into_iter()
            .map(|point| {
                let chunk = to_chunk(point.payload)?;
                let (dense, sparse) = split_vectors(&chunk.tenant, point.vectors);
                Ok(Hit {
                    score: point.score,
                    chunk,
                    dense,
                    sparse,
                })
            })
            .collect()
    }

    async fn sources(&self, scope: &TenantScope) -> Result<Vec<SourceSummary>, StoreError> {
        let mut sources: Vec<SourceSummary> = self
            .facet(SOURCE, Some(scope_filter(scope)))
            .await?
            .into_iter()
            .map(|(source, chunks)| SourceSummary { source, chunks })
            .collect();
        sources.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(sources)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let info = self.info().await?;
        let cluster = self.cluster_stats(&info).await.map_err(|(kind, reason)| {
            StoreError::backend(kind, format!("Qdrant server {}: {reason}", self.location))
        })?;
        Ok(StoreStats {
            chunks: info.points_count.unwrap_or(0) as usize,
            indexed_vectors: info.indexed_vectors_count.unwrap_or(0) as usize,
            segments: info.segments_count as usize,
            // The gRPC API does not report disk use; the server's own metrics do.
            bytes_on_disk: 0,
            cluster: Some(cluster),
        })
    }

    async fn commit(&self) -> Result<(), StoreError> {
        // Every upsert and delete waited for the server's WAL, and the server indexes and
        // flushes on its own: nothing is left to do here.
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every write waited for the server's WAL, which the server replays after a crash.
        Ok(())
    }

    async fn scroll(
        &self,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<ScrollPage, StoreError> {
        let request = ScrollPoints {
            collection_name: self.collection.clone(),
            offset: from.map(uuid_id),
            limit: Some(limit.clamp(1, u32::MAX as usize) as u32),
            with_payload: with_payload(true),
            with_vectors: with_vectors(true),
            ..Default::default()
        };
        let response = self
            .call(|c| {
                let request = request.clone();
                async move { c.scroll(request).await }
            })
            .await
            .map_err(|e| self.call_failed(e))?;
        let chunks = response
            .result
            .into_iter()
            .map(|point| {
                let chunk = to_chunk(point.payload)?;
                let (dense, sparse) = split_vectors(&chunk.tenant, point.vectors);
                Ok(StoredChunk {
                    chunk,
                    dense,
                    sparse: sparse.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = match response.next_page_offset {
            Some(id) => Some(parse_id(Some(id))?),
            None => None,
        };
        Ok(ScrollPage { chunks, next })
    }

    async fn tenant_counts(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        Ok(self.facet(TENANT, None).await?.into_iter().collect())
    }
}
