//! lore: a team knowledge-base assistant. The core library: configuration, ingestion,
//! the knowledge store, retrieval and answering. Chat platforms live under `adapters/`.

pub mod answer;
pub mod app;
pub mod bench;
pub mod bot;
pub mod cli;
pub mod config;
pub mod embed;
pub mod eval;
pub mod http;
pub mod ingest;
pub mod llm;
pub mod retrieve;
pub mod serve;
pub mod store;
