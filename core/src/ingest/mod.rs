//! Knowledge's path: load → clean → split → embed → store.

pub mod clean;
pub mod document;
pub mod load;
pub mod pipeline;
mod settings;
pub mod split;

pub use settings::IngestSettings;
