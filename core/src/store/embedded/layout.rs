//! lore's engine configuration: named vectors, the per-tenant HNSW layout and the payload
//! indexes.

use std::collections::HashMap;

use qdrant_edge::{
    CreateIndex, Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams,
    FieldIndexOperations, HnswIndexConfig, IntegerIndexParams, KeywordIndexParams,
    PayloadFieldSchema, PayloadSchemaParams, UpdateOperation,
};

use crate::store::schema::{DENSE, SOURCE, SPARSE, TENANT};
use crate::store::scope_idf::BM25_TERMS;

/// lore's index layout. Every search carries a tenant filter, so the dense index holds one
/// HNSW graph per tenant (links among the tenant's own points, `payload_m`) and no global
/// graph (`m` 0): Qdrant's layout for multitenancy. A walk then meets almost only points
/// that pass the filter instead of rejecting nine in ten; tenants too small for a graph are
/// scored exactly over their own points, found through the tenant index.
///
/// A tenant's graph is smaller and its walk shorter than the global graph's, so it is built
/// with a wider beam (`ef_construct` 200) to keep the recall of the global layout
/// (`lore bench`: 0.586 against 0.585 at search ef 100; 0.548 with the default 100).
pub(super) fn hnsw_layout() -> HnswIndexConfig {
    HnswIndexConfig {
        m: 0,
        payload_m: Some(16),
        ef_construct: 200,
        ..Default::default()
    }
}

/// The search beam when `[store] hnsw_ef` is 0. The engine's own default is the build beam.
pub(super) const DEFAULT_SEARCH_EF: usize = 100;

pub(super) fn edge_config(dense_dimension: Option<usize>) -> EdgeConfig {
    let mut config = EdgeConfig {
        // No IDF modifier: lore weights queries by the scope's IDF (store::scope_idf).
        sparse_vectors: HashMap::from([(SPARSE.to_owned(), EdgeSparseVectorParams::default())]),
        hnsw_config: hnsw_layout(),
        ..Default::default()
    };
    if let Some(size) = dense_dimension {
        config.vectors.insert(
            DENSE.to_owned(),
            EdgeVectorParams {
                size,
                distance: Distance::Cosine,
                on_disk: None,
                multivector_config: None,
                datatype: None,
                quantization_config: None,
                hnsw_config: None,
            },
        );
    }
    config
}

pub(super) fn create_payload_indexes(shard: &EdgeShard) -> Result<(), qdrant_edge::OperationError> {
    create_keyword_indexes(shard)?;
    create_term_index(shard)
}

/// The tenant and source indexes (every store format has them).
pub(super) fn create_keyword_indexes(shard: &EdgeShard) -> Result<(), qdrant_edge::OperationError> {
    // Only the tenant gets graph links of its own (see hnsw_layout); a source name is not
    // unique across tenants.
    for (field, is_tenant) in [(TENANT, true), (SOURCE, false)] {
        let schema =
            PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
                r#type: Default::default(),
                is_tenant: Some(is_tenant),
                on_disk: None,
                enable_hnsw: Some(is_tenant),
            }));
        create_index(shard, field, schema)?;
    }
    Ok(())
}

/// The index behind per-scope document frequencies: exact lookups only, and no graph links
/// per value (a chunk holds a hundred terms).
pub(super) fn create_term_index(shard: &EdgeShard) -> Result<(), qdrant_edge::OperationError> {
    let schema =
        PayloadFieldSchema::FieldParams(PayloadSchemaParams::Integer(IntegerIndexParams {
            lookup: Some(true),
            range: Some(false),
            enable_hnsw: Some(false),
            ..Default::default()
        }));
    create_index(shard, BM25_TERMS, schema)
}

fn create_index(
    shard: &EdgeShard,
    field: &str,
    schema: PayloadFieldSchema,
) -> Result<(), qdrant_edge::OperationError> {
    shard.update(UpdateOperation::FieldIndexOperation(
        FieldIndexOperations::CreateIndex(CreateIndex {
            field_name: field.try_into().expect("valid field name"),
            field_schema: Some(schema),
        }),
    ))
}
