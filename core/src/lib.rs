//! lore's core: everything lore knows and decides, with no command line, no HTTP server and
//! no chat platform. Each module owns its settings type; the application (`lore`, the
//! binary crate) gathers them, opens a [`kb::KnowledgeBase`] and wires the surfaces.
//!
//! Layers, each using only the ones below it: `bot`, `eval` → `answer` → `retrieve`,
//! `ingest` → `store`, `embed` → `llm`; `kb` assembles store, embedder, retriever,
//! assistant and ingestor.

pub mod answer;
pub mod bot;
mod choice;
pub mod embed;
pub mod eval;
pub mod ingest;
pub mod kb;
pub mod llm;
pub mod progress;
pub mod retrieve;
pub mod setting;
pub mod store;

#[cfg(test)]
pub(crate) mod test_defaults;
