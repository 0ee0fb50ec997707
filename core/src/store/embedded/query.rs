//! Searches: the tenant filter, one side (dense or BM25) of a query, and hybrid queries
//! fused here with reciprocal rank fusion.

use std::collections::HashMap;

use qdrant_edge::{
    AnyVariants, Condition, CountRequest, EdgeShard, FieldCondition, Filter, Match, NamedQuery,
    PointId, QueryEnum, QueryRequest, Record, ScoredPoint, ScoringQuery, SearchParams,
    ValueVariants, VectorInternal, WithPayloadInterface, WithVector,
};

use super::engine_error;
use super::layout::DENSE_RESCORING;
use super::points::{scored_hit, to_hit};
use crate::store::schema::{DENSE, SOURCE, SPARSE, TENANT};
use crate::store::scope_idf::{BM25_TERMS, document_frequency_probes, weighted_scope_query};
use crate::store::{Hit, SearchRequest, SparseVector, StoreError, StoreQuery, TenantScope};

fn keyword(field: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(
        field.try_into().expect("valid field name"),
        Match::new_value(ValueVariants::String(value.to_owned())),
    ))
}

/// The tenant filter: the one place tenants become a Qdrant condition. Dense searches pass
/// one tenant at a time, BM25 searches and listings the whole scope ([`side_query`]).
pub(super) fn tenant_filter(tenants: &[String]) -> Filter {
    match tenants {
        [tenant] => Filter::new_must(keyword(TENANT, tenant)),
        _ => Filter::new_must(Condition::Field(FieldCondition::new_match(
            TENANT.try_into().expect("valid field name"),
            Match::new_any(AnyVariants::Strings(tenants.iter().cloned().collect())),
        ))),
    }
}

/// How many points hold any of `values` in the indexed `field`, the values naming disjoint
/// sets of points (one tenant each). Each is read from the length of the value's posting
/// list: the engine's estimate of a one-value match is that length, exactly. An exact
/// count instead collects every matching point's id, which took up to a millisecond for a
/// common word at 100k chunks, once per query term.
fn indexed_count(
    shard: &EdgeShard,
    field: &str,
    values: impl IntoIterator<Item = ValueVariants>,
) -> Result<usize, StoreError> {
    values
        .into_iter()
        .map(|value| {
            let condition = Condition::Field(FieldCondition::new_match(
                field.try_into().expect("valid field name"),
                Match::new_value(value),
            ));
            shard
                .count(CountRequest {
                    filter: Some(Filter::new_must(condition)),
                    exact: false,
                })
                .map_err(engine_error)
        })
        .sum()
}

/// The BM25 query for a scope, weighted by the IDF counted in the scope alone. A scope's
/// tenants hold disjoint chunks, so its counts are sums of one-tenant counts, and a term's
/// hashes are keyed by tenant (64 bits of SHA-256), so each names one tenant's chunks alone.
pub(super) fn weighted_query(
    shard: &EdgeShard,
    scope: &TenantScope,
    query: &SparseVector,
) -> Result<SparseVector, StoreError> {
    if query.indices.is_empty() {
        return Ok(SparseVector::default());
    }
    let tenants = scope.tenants().iter().cloned().map(ValueVariants::String);
    let chunks = indexed_count(shard, TENANT, tenants)?;
    let dfs = document_frequency_probes(scope, query)
        .into_iter()
        .map(|hashes| {
            let hashes = hashes.into_iter().map(ValueVariants::Integer);
            indexed_count(shard, BM25_TERMS, hashes)
        })
        .collect::<Result<Vec<usize>, StoreError>>()?;
    Ok(weighted_scope_query(scope, query, chunks, &dfs))
}

pub(super) fn source_filter(tenant: &str, source: &str) -> Filter {
    Filter {
        must: Some(vec![keyword(TENANT, tenant), keyword(SOURCE, source)]),
        ..Default::default()
    }
}

fn nearest(vector: VectorInternal, using: &str) -> ScoringQuery {
    ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
        query: vector,
        using: Some(using.to_owned()),
    }))
}

/// A single-vector query under the tenant filter. Hybrid queries are two of these, run in
/// parallel and fused here (see [`fuse_rrf`]): the engine would run its prefetches one after
/// the other, so a hybrid query cost the sum of both sides.
fn vector_query(
    filter: Filter,
    query: ScoringQuery,
    limit: usize,
    search_ef: usize,
    with_payload: bool,
    with_vectors: bool,
) -> QueryRequest {
    QueryRequest {
        prefetches: vec![],
        query: Some(query),
        filter: Some(filter),
        score_threshold: None,
        limit,
        offset: 0,
        params: Some(SearchParams {
            hnsw_ef: Some(search_ef.max(limit)),
            quantization: Some(DENSE_RESCORING),
            ..Default::default()
        }),
        with_vector: WithVector::Bool(with_vectors),
        with_payload: WithPayloadInterface::Bool(with_payload),
    }
}

/// Reciprocal rank fusion of ranked id lists, scored as Qdrant does (so both backends
/// agree): each list adds 1 / (k + position) (position from 0; k is at least 1) to an id's
/// score. Ties keep the order of first appearance, so the result is stable.
pub(super) fn fuse_rrf(lists: &[Vec<PointId>], k: u32, limit: usize) -> Vec<(PointId, f32)> {
    let mut fused: Vec<(PointId, f32)> = Vec::new();
    let mut position: HashMap<PointId, usize> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let score = 1.0 / (k.max(1) as f32 + rank as f32);
            match position.get(id) {
                Some(&at) => fused[at].1 += score,
                None => {
                    position.insert(*id, fused.len());
                    fused.push((*id, score));
                }
            }
        }
    }
    // A stable sort keeps first-appearance order among equal scores.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused.truncate(limit);
    fused
}

/// One side of a search: what to score against.
#[derive(Clone, Copy)]
enum Side<'a> {
    Dense(&'a [f32]),
    Sparse(&'a SparseVector),
}

/// Runs one side under the scope's tenant filter. Dense runs tenant by tenant, the lists
/// merged by score: the index holds one graph per tenant (see [`super::layout::hnsw_layout`]) and a walk
/// cannot cross from one tenant's graph into another's. BM25 is one query carrying every
/// tenant's keyed terms weighted by the scope's IDF ([`weighted_query`]), as on the server.
fn side_query(
    shard: &EdgeShard,
    scope: &TenantScope,
    side: Side<'_>,
    limit: usize,
    search_ef: usize,
    with_payload: bool,
    with_vectors: bool,
) -> Result<Vec<ScoredPoint>, StoreError> {
    let run = |tenants: &[String], query: ScoringQuery| {
        let request = vector_query(
            tenant_filter(tenants),
            query,
            limit,
            search_ef,
            with_payload,
            with_vectors,
        );
        shard.query(request).map_err(engine_error)
    };
    match side {
        Side::Sparse(v) => {
            let terms = weighted_query(shard, scope, v)?;
            let vector = VectorInternal::Sparse(qdrant_edge::SparseVector {
                indices: terms.indices,
                values: terms.values,
            });
            run(scope.tenants(), nearest(vector, SPARSE))
        }
        Side::Dense(v) => {
            let mut points = Vec::new();
            for tenant in scope.tenants() {
                let query = nearest(VectorInternal::Dense(v.to_vec()), DENSE);
                points.extend(run(std::slice::from_ref(tenant), query)?);
            }
            if scope.tenants().len() > 1 {
                points.sort_by(|a, b| b.score.total_cmp(&a.score));
                points.truncate(limit);
            }
            Ok(points)
        }
    }
}

/// Runs a search request against the shard.
pub(super) fn run_search(
    shard: &EdgeShard,
    request: SearchRequest,
    search_ef: usize,
) -> Result<Vec<Hit>, StoreError> {
    let scope = &request.scope;
    let (limit, with_vectors) = (request.limit, request.with_vectors);
    let single = |side| {
        side_query(shard, scope, side, limit, search_ef, true, with_vectors)?
            .into_iter()
            .map(scored_hit)
            .collect()
    };
    match &request.query {
        StoreQuery::Dense(v) => single(Side::Dense(v)),
        StoreQuery::Sparse(v) => single(Side::Sparse(v)),
        StoreQuery::Hybrid {
            dense,
            sparse,
            rrf_k,
        } => {
            let depth = request.candidates.max(limit);
            let ids = |side| -> Result<Vec<PointId>, StoreError> {
                let points = side_query(shard, scope, side, depth, search_ef, false, false)?;
                Ok(points.into_iter().map(|p| p.id).collect())
            };
            let (dense_ids, sparse_ids) =
                rayon::join(|| ids(Side::Dense(dense)), || ids(Side::Sparse(sparse)));
            let fused = fuse_rrf(&[dense_ids?, sparse_ids?], *rrf_k, limit);
            let wanted: Vec<PointId> = fused.iter().map(|(id, _)| *id).collect();
            let records = shard
                .retrieve(
                    &wanted,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(WithVector::Bool(with_vectors)),
                )
                .map_err(engine_error)?;
            let mut records: HashMap<PointId, Record> =
                records.into_iter().map(|r| (r.id, r)).collect();
            fused
                .into_iter()
                // Both calls run under one read lock, so every id resolves; none is assumed.
                .filter_map(|(id, score)| records.remove(&id).map(|r| (r, score)))
                .map(|(record, score)| to_hit(record.payload, record.vector, score))
                .collect()
        }
    }
}
