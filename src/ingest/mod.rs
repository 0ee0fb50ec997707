//! Knowledge's path: load → clean → split → embed → store.

pub mod document;
