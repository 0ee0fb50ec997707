//! lore's engine configuration: named vectors, the per-tenant HNSW layout and the payload
//! indexes.

use std::collections::HashMap;

use qdrant_edge::{
    CreateIndex, Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams,
    FieldIndexOperations, HnswIndexConfig, IntegerIndexParams, KeywordIndexParams,
    PayloadFieldSchema, PayloadSchemaParams, QuantizationConfig, QuantizationSearchParams,
    ScalarQuantizationConfig, ScalarType, UpdateOperation,
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

/// int8 copies of the dense vectors, kept in RAM: a graph walk compares a quarter of the
/// bytes, and the best candidates are rescored with the float vectors ([`DENSE_RESCORING`]).
/// `lore bench` at 100k chunks, side by side: dense p50 1.28–1.75 ms against 1.83–2.05,
/// the same recall@20 against an exact scan (0.597); the graph was built in a quarter of
/// the time (not side by side). A store below the engine's indexing threshold (a few thousand chunks) is scanned
/// exactly with the float vectors either way.
pub(super) fn dense_quantization() -> QuantizationConfig {
    ScalarQuantizationConfig {
        r#type: ScalarType::Int8,
        quantile: Some(0.99),
        always_ram: Some(true),
    }
    .into()
}

/// How searches use [`dense_quantization`]: twice the wanted candidates walked on the int8
/// copies, then rescored with the float vectors, so scores are the float cosines.
pub(super) const DENSE_RESCORING: QuantizationSearchParams = QuantizationSearchParams {
    ignore: false,
    rescore: Some(true),
    oversampling: Some(2.0),
};

/// A store's saved engine config with lore's current layout ([`hnsw_layout`],
/// [`dense_quantization`]), or None when it has it already. A store from an older lore is
/// loaded with it: the engine's config-mismatch optimiser rebuilds its segments at the next
/// commit (the next ingest), and searches are right meanwhile.
pub(super) fn with_current_layout(saved: &EdgeConfig) -> Option<EdgeConfig> {
    let mut config = saved.clone();
    config.hnsw_config = hnsw_layout();
    if let Some(dense) = config.vectors.get_mut(DENSE) {
        dense.quantization_config = Some(dense_quantization());
    }
    (config != *saved).then_some(config)
}

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
                quantization_config: Some(dense_quantization()),
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
