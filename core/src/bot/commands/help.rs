//! `help`: what the bot does and its commands.

/// The help text.
pub fn text() -> String {
    "I answer questions from your team's knowledge base, with sources. Mention me, reply to \
     me, or DM me.\n\n\
     /ask QUESTION: ask (a mention or a DM works too)\n\
     /ingest: add attached files, URLs or \"quoted text\" (admins)\n\
     /forget SOURCE: remove a source (admins)\n\
     /sources: list what I know here\n\
     /reset: forget this conversation\n\
     /stats: knowledge, quota and memory figures\n\
     /knowledge-channel on|off: learn from every post in this channel (admins)\n\
     /help: this text"
        .to_owned()
}
