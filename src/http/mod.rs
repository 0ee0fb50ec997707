//! The HTTP API, the web chat page, health and metrics (issue 10), started by `lore serve`.

pub mod settings;
