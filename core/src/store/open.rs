//! Opening the configured backend.

use std::sync::Arc;

use super::embedded::{DataDirLock, EmbeddedStore};
use super::qdrant::{CollectionLayout, QdrantStore, ServerConfig};
use super::{KnowledgeStore, StoreBackend, StoreError, StoreSettings};

/// Opens one knowledge store backend as configured under `[store]`; `dense` is the dense
/// embedder's id and dimension (None for sparse-only), which the store must have been built with.
pub async fn open_store(
    settings: &StoreSettings,
    backend: StoreBackend,
    dense: Option<(String, usize)>,
) -> Result<Arc<dyn KnowledgeStore>, StoreError> {
    let claim = claim_data_dir(settings, backend).await?;
    open_claimed(settings, backend, dense, claim).await
}

/// Takes the data dir for this process when `backend` keeps the store in it (embedded): one
/// lore process per data dir, refused at once with [`StoreError::InUse`] naming the holder.
/// `lore` claims before anything slow (loading a model), then opens with [`open_claimed`].
pub async fn claim_data_dir(
    settings: &StoreSettings,
    backend: StoreBackend,
) -> Result<Option<Arc<DataDirLock>>, StoreError> {
    match backend {
        StoreBackend::Embedded => {
            let dir = settings.data_dir.clone();
            let lock = tokio::task::spawn_blocking(move || DataDirLock::acquire(&dir)).await??;
            Ok(Some(Arc::new(lock)))
        }
        StoreBackend::Qdrant => Ok(None),
    }
}

/// [`open_store`] with the data dir already claimed ([`claim_data_dir`]); an embedded store
/// keeps the claim for as long as it is open.
pub async fn open_claimed(
    settings: &StoreSettings,
    backend: StoreBackend,
    dense: Option<(String, usize)>,
    claim: Option<Arc<DataDirLock>>,
) -> Result<Arc<dyn KnowledgeStore>, StoreError> {
    Ok(match backend {
        StoreBackend::Embedded => {
            let dir = settings.knowledge_dir();
            let ef = settings.hnsw_ef;
            let claim = match claim {
                Some(claim) => claim,
                None => claim_data_dir(settings, backend)
                    .await?
                    .expect("the embedded backend claims its data dir"),
            };
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    EmbeddedStore::open_in_data_dir(claim, &dir, dense)
                        .map(|s| s.with_search_ef(ef))
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
                layout: CollectionLayout {
                    shard_number: settings.shard_number,
                    replication_factor: settings.replication_factor,
                    write_consistency_factor: settings.write_consistency_factor,
                    peer_wait: std::time::Duration::from_secs(settings.peer_wait_secs),
                },
            };
            let store = QdrantStore::connect(config, dense).await?;
            tracing::info!(
                url = store.current_url(),
                collection = %settings.collection,
                version = store.server_version(),
                "using the Qdrant server"
            );
            Arc::new(store)
        }
    })
}
