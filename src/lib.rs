//! lore: a team knowledge-base assistant. The core library: configuration, ingestion,
//! the knowledge store, retrieval and answering. Chat platforms live under `adapters/`.

pub mod embed;
pub mod ingest;
pub mod llm;
