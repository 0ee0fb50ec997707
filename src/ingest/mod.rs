//! Knowledge's path: load → clean → split → embed → store.

pub mod document;
pub mod load;
pub mod pipeline;
pub mod split;
