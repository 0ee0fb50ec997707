//! The knowledge base assembled: settings of the core's own sections in, a ready store,
//! embedder, chat model, retriever, assistant and ingestor out. Every surface (CLI, chat
//! platforms, HTTP, evaluation) starts from [`KnowledgeBase::open`].

use std::sync::Arc;

use crate::answer::{AnswerSettings, Assistant};
use crate::embed::bm25::Bm25Encoder;
use crate::embed::{BuildError, Embedder, EmbeddingSettings, build_embedder};
use crate::ingest::IngestSettings;
use crate::ingest::pipeline::Ingestor;
use crate::llm::{ChatModel, LlmError, LlmSettings, Provider, Secrets, build_chat_model};
use crate::retrieve::{RetrievalSettings, Retriever};
pub use crate::setting::SettingError;
use crate::store::embedded::DataDirLock;
use crate::store::{KnowledgeStore, StoreError, StoreSettings, claim_data_dir, open_claimed};

/// The sections the knowledge base is built from.
#[derive(Debug, Clone)]
pub struct KnowledgeBaseSettings {
    pub store: StoreSettings,
    pub ingest: IngestSettings,
    pub embedding: EmbeddingSettings,
    pub retrieval: RetrievalSettings,
    pub llm: LlmSettings,
    pub answer: AnswerSettings,
}

impl KnowledgeBaseSettings {
    /// Every section's own checks, the first failure named by its key.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.store.validate()?;
        self.ingest.validate()?;
        self.embedding.validate()?;
        self.retrieval.validate()?;
        self.llm.validate("llm")?;
        self.answer.validate()
    }
}

/// Why the knowledge base could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embedder(#[from] BuildError),
    #[error(transparent)]
    Llm(#[from] LlmError),
}

/// The assembled core.
pub struct KnowledgeBase {
    pub settings: KnowledgeBaseSettings,
    pub store: Arc<dyn KnowledgeStore>,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub llm: Option<Arc<dyn ChatModel>>,
    pub retriever: Arc<Retriever>,
    pub assistant: Arc<Assistant>,
    pub ingestor: Ingestor,
    /// The data dir this process holds (embedded store): `lore serve` records its HTTP
    /// address in it, for the message another lore process gets.
    pub data_dir_lock: Option<Arc<DataDirLock>>,
}

impl KnowledgeBase {
    /// Builds the embedder and chat model and opens the configured store with them.
    pub async fn open(settings: KnowledgeBaseSettings) -> Result<Self, OpenError> {
        // First, so a data dir in use is refused at once, before a model loads.
        let claim = claim_data_dir(&settings.store, settings.store.backend).await?;
        let secrets = Secrets::from_env()?;
        let embedder = build_embedder(&settings.embedding, &secrets)?;
        let llm = build_chat_model(&settings.llm, &secrets)?;
        if settings.llm.provider == Provider::None {
            tracing::info!("llm.provider = \"none\": answers quote the best passages");
        }
        let dense = embedder
            .as_ref()
            .map(|e| (e.id().to_owned(), e.dimension()));
        let store = open_claimed(
            &settings.store,
            settings.store.backend,
            dense,
            claim.clone(),
        )
        .await?;
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
            data_dir_lock: claim,
        })
    }
}
