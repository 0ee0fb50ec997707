//! `help`: what the bot does and its commands, from the shared command catalogue.

/// The help text.
pub fn text() -> String {
    lore_chat::commands::help_text()
}
