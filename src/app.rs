//! Wiring: settings in, a ready store, embedder, retriever and ingestor out. Every
//! surface (CLI, chat, adapters, HTTP) starts from `App::open`.

use std::sync::Arc;

use crate::answer::Assistant;
use crate::config::{Settings, StoreBackend};
use crate::embed::bm25::Bm25Encoder;
use crate::embed::{EmbedError, Embedder};
use crate::ingest::pipeline::Ingestor;
use crate::llm::{ChatModel, LlmError, Secrets};
use crate::retrieve::Retriever;
use crate::store::edge::EdgeStore;
use crate::store::server::{QdrantServerStore, ServerConfig};
use crate::store::{KnowledgeStore, StoreError};

/// Why lore could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Llm(#[from] LlmError),
}

/// The assembled core.
pub struct App {
    pub settings: Settings,
    pub store: Arc<dyn KnowledgeStore>,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub llm: Option<Arc<dyn ChatModel>>,
    pub retriever: Arc<Retriever>,
    pub assistant: Arc<Assistant>,
    pub ingestor: Ingestor,
}

impl App {
    /// Opens the store under the data dir with the configured embedder.
    pub async fn open(settings: Settings) -> Result<Self, AppError> {
        let secrets = Secrets::from_env()?;
        let embedder = build_embedder(&settings, &secrets)?;
        let llm = crate::llm::build_chat_model(&settings.llm, &secrets)?;
        if llm.is_none() {
            tracing::info!("llm.provider = \"none\": answers quote the best passages");
        }
        let dense = embedder
            .as_ref()
            .map(|e| (e.id().to_owned(), e.dimension()));
        let store = open_store(&settings, settings.store.backend, dense).await?;
        let bm25 = Arc::new(Bm25Encoder::new());
        let retriever = Arc::new(Retriever::new(
            store.clone(),
            embedder.clone(),
            bm25.clone(),
            settings.retrieval.clone(),
        ));
        let assistant = Arc::new(Assistant::new(
            retriever.clone(),
            llm.clone(),
            settings.answer.clone(),
            settings.llm.max_tokens,
        ));
        let ingestor = Ingestor::new(store.clone(), embedder.clone(), bm25, &settings.ingest);
        Ok(Self {
            settings,
            store,
            embedder,
            llm,
            retriever,
            assistant,
            ingestor,
        })
    }
}

/// Opens one knowledge store backend as configured under `[store]`; `dense` is the dense
/// embedder's id and dimension (None for sparse-only), which the store must have been built with.
pub async fn open_store(
    settings: &Settings,
    backend: StoreBackend,
    dense: Option<(String, usize)>,
) -> Result<Arc<dyn KnowledgeStore>, StoreError> {
    Ok(match backend {
        StoreBackend::Embedded => {
            let dir = settings.knowledge_dir();
            let ef = settings.store.hnsw_ef;
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    EdgeStore::open(&dir, dense).map(|s| s.with_search_ef(ef))
                })
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??,
            )
        }
        StoreBackend::Qdrant => {
            let config = ServerConfig {
                url: settings.store.url.clone(),
                collection: settings.store.collection.clone(),
                // Secrets only from the environment; an empty variable means no key.
                api_key: std::env::var("QDRANT_API_KEY")
                    .ok()
                    .filter(|k| !k.trim().is_empty()),
                timeout: std::time::Duration::from_secs(settings.store.timeout_secs),
            };
            let store = QdrantServerStore::connect(config, dense).await?;
            tracing::info!(
                url = %settings.store.url,
                collection = %settings.store.collection,
                version = store.server_version(),
                "using the Qdrant server"
            );
            Arc::new(store)
        }
    })
}

/// The configured dense embedder, or None (sparse-only, announced once at start-up).
pub fn build_embedder(
    settings: &Settings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn Embedder>>, AppError> {
    match settings.embedding.provider.as_str() {
        "none" => {
            tracing::info!("embedding.provider = \"none\": search is sparse-only (BM25)");
            Ok(None)
        }
        "local" => {
            let path = &settings.embedding.model_path;
            if !path.is_file() {
                tracing::warn!(
                    "local embedding model {} not found: running sparse-only (BM25). \
                     Run scripts/fetch-model.sh to install it.",
                    path.display()
                );
                return Ok(None);
            }
            let threads = match settings.embedding.threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            };
            let model = crate::embed::local::LocalE5Embedder::load(path, threads)?;
            Ok(Some(Arc::new(model)))
        }
        _ => Ok(crate::llm::build_vendor_embedder(
            &settings.embedding_vendor,
            secrets,
        )?),
    }
}
