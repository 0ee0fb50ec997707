//! lore, the application: the `lore` command line, `lore serve` with its surfaces (Discord,
//! Telegram, the HTTP API, the terminal), and the aggregate settings that wire them to the
//! core (`lore_core`). Everything lore knows and decides lives in the core; this crate
//! only parses, prints, serves and connects.

pub mod bench;
pub mod cli;
pub mod http;
pub mod progress;
pub mod serve;
pub mod settings;
pub mod terminal;
