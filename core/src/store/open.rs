//! Opening the configured backend.

use std::sync::Arc;

use super::embedded::EmbeddedStore;
use super::qdrant::{QdrantStore, ServerConfig};
use super::{KnowledgeStore, StoreBackend, StoreError, StoreSettings};

/// Opens one knowledge store backend as configured under `[store]`; `dense` is the dense
/// embedder's id and dimension (None for sparse-only), which the store must have been built with.
pub async fn open_store(
    settings: &StoreSettings,
    backend: StoreBackend,
    dense: Option<(String, usize)>,
) -> Result<Arc<dyn KnowledgeStore>, StoreError> {
    Ok(match backend {
        StoreBackend::Embedded => {
            let dir = settings.knowledge_dir();
            let ef = settings.hnsw_ef;
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    EmbeddedStore::open(&dir, dense).map(|s| s.with_search_ef(ef))
                })
                .await??,
            )
        }
        StoreBackend::Qdrant => {
            let config = ServerConfig {
                url: settings.url.clone(),
                collection: settings.collection.clone(),
                // Secrets only from the environment; an empty variable means no key.
                api_key: std::env::var("QDRANT_API_KEY")
                    .ok()
                    .filter(|k| !k.trim().is_empty()),
                timeout: std::time::Duration::from_secs(settings.timeout_secs),
            };
            let store = QdrantStore::connect(config, dense).await?;
            tracing::info!(
                url = %settings.url,
                collection = %settings.collection,
                version = store.server_version(),
                "using the Qdrant server"
            );
            Arc::new(store)
        }
    })
}
