//! A chunk as a server point and back, filters, and the small request pieces.

use std::collections::HashMap;

use qdrant_client::Payload;
use qdrant_client::qdrant::{
    Condition, DenseVector, FieldCondition, Filter, Match, NamedVectors, PointId, PointStruct,
    Query, RepeatedIntegers, RepeatedStrings, Value, Vector, VectorInput, Vectors, VectorsOutput,
    WithPayloadSelector, WithVectorsSelector, condition, r#match, point_id, query, vector,
    vector_input, vector_output, vectors, vectors_output, with_payload_selector,
    with_vectors_selector,
};

use crate::store::schema::{
    DENSE, SOURCE, SPARSE, TENANT, chunk_point_id, lore_terms, payload_chunk, point_payload,
    tenant_terms,
};
use crate::store::scope_idf::BM25_TERMS;
use crate::store::{Chunk, SparseVector, StoreError, StoreErrorKind, StoredChunk, TenantScope};

/// A point lore did not write.
fn not_lores(reason: String) -> StoreError {
    StoreError::backend(StoreErrorKind::Incompatible, reason)
}

pub(super) fn uuid_id(id: uuid::Uuid) -> PointId {
    PointId {
        point_id_options: Some(point_id::PointIdOptions::Uuid(id.to_string())),
    }
}

pub(super) fn parse_id(id: Option<PointId>) -> Result<uuid::Uuid, StoreError> {
    match id.and_then(|p| p.point_id_options) {
        Some(point_id::PointIdOptions::Uuid(s)) => uuid::Uuid::parse_str(&s)
            .map_err(|e| not_lores(format!("point id {s:?} is not a UUID: {e}"))),
        other => Err(not_lores(format!(
            "point id {other:?} was not written by lore (expected a UUID)"
        ))),
    }
}

pub(super) fn keyword(field: &str, value: &str) -> Condition {
    Condition {
        condition_one_of: Some(condition::ConditionOneOf::Field(FieldCondition {
            key: field.to_owned(),
            r#match: Some(Match {
                match_value: Some(r#match::MatchValue::Keyword(value.to_owned())),
            }),
            ..Default::default()
        })),
    }
}

/// The tenant filter: the one place a scope becomes a server condition.
pub(super) fn scope_filter(scope: &TenantScope) -> Filter {
    Filter {
        must: vec![Condition {
            condition_one_of: Some(condition::ConditionOneOf::Field(FieldCondition {
                key: TENANT.to_owned(),
                r#match: Some(Match {
                    match_value: Some(r#match::MatchValue::Keywords(RepeatedStrings {
                        strings: scope.tenants().to_vec(),
                    })),
                }),
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

/// The scope's chunks holding any of `hashes` in [`BM25_TERMS`].
pub(super) fn term_filter(scope: &TenantScope, hashes: Vec<i64>) -> Filter {
    let mut filter = scope_filter(scope);
    filter.must.push(Condition {
        condition_one_of: Some(condition::ConditionOneOf::Field(FieldCondition {
            key: BM25_TERMS.to_owned(),
            r#match: Some(Match {
                match_value: Some(r#match::MatchValue::Integers(RepeatedIntegers {
                    integers: hashes,
                })),
            }),
            ..Default::default()
        })),
    });
    filter
}

pub(super) fn source_filter(tenant: &str, source: &str) -> Filter {
    Filter {
        must: vec![keyword(TENANT, tenant), keyword(SOURCE, source)],
        ..Default::default()
    }
}

pub(super) fn to_point(stored: StoredChunk) -> Result<PointStruct, StoreError> {
    let StoredChunk {
        chunk,
        dense,
        sparse,
    } = stored;
    let id = chunk_point_id(&chunk.tenant, &chunk.source, chunk.index);
    let payload = Payload::from(point_payload(&chunk, &sparse)?);
    let mut named = HashMap::from([(
        SPARSE.to_owned(),
        Vector {
            vector: Some(vector::Vector::Sparse(
                qdrant_client::qdrant::SparseVector {
                    values: sparse.values,
                    indices: tenant_terms(&chunk.tenant, sparse.indices),
                },
            )),
            ..Default::default()
        },
    )]);
    if let Some(data) = dense {
        named.insert(
            DENSE.to_owned(),
            Vector {
                vector: Some(vector::Vector::Dense(DenseVector { data })),
                ..Default::default()
            },
        );
    }
    Ok(PointStruct {
        id: Some(uuid_id(id)),
        payload: payload.into(),
        vectors: Some(Vectors {
            vectors_options: Some(vectors::VectorsOptions::Vectors(NamedVectors {
                vectors: named,
            })),
        }),
    })
}

/// The stored vectors of a point of `tenant`: (dense, sparse with lore's term ids).
pub(super) fn split_vectors(
    tenant: &str,
    vectors: Option<VectorsOutput>,
) -> (Option<Vec<f32>>, Option<SparseVector>) {
    let (mut dense, mut sparse) = (None, None);
    if let Some(vectors_output::VectorsOptions::Vectors(named)) =
        vectors.and_then(|v| v.vectors_options)
    {
        for (name, output) in named.vectors {
            match (name.as_str(), output.into_vector()) {
                (DENSE, vector_output::Vector::Dense(v)) => dense = Some(v.data),
                (SPARSE, vector_output::Vector::Sparse(v)) => {
                    sparse = Some(lore_terms(tenant, v.indices, v.values))
                }
                _ => {}
            }
        }
    }
    (dense, sparse)
}

pub(super) fn to_chunk(payload: HashMap<String, Value>) -> Result<Chunk, StoreError> {
    payload_chunk(Payload::from(payload).into())
}

pub(super) fn nearest(input: vector_input::Variant) -> Option<Query> {
    Some(Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(input),
        })),
    })
}

pub(super) fn dense_input(v: Vec<f32>) -> vector_input::Variant {
    vector_input::Variant::Dense(DenseVector { data: v })
}

pub(super) fn sparse_input(v: SparseVector) -> vector_input::Variant {
    vector_input::Variant::Sparse(qdrant_client::qdrant::SparseVector {
        values: v.values,
        indices: v.indices,
    })
}

pub(super) fn with_payload(enable: bool) -> Option<WithPayloadSelector> {
    Some(WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Enable(enable)),
    })
}

pub(super) fn with_vectors(enable: bool) -> Option<WithVectorsSelector> {
    Some(WithVectorsSelector {
        selector_options: Some(with_vectors_selector::SelectorOptions::Enable(enable)),
    })
}
