//! The bot's commands, listed once: the core's parser, `/help`, Discord's slash-command
//! definitions and Telegram's command menu are all derived from [`CATALOGUE`].

/// A command the bot understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandId {
    Ask,
    Ingest,
    Forget,
    Sources,
    Reset,
    Stats,
    KnowledgeChannel,
    Help,
}

/// What an option of a command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// Free text.
    Text,
    /// One of a fixed list of words.
    Choice(&'static [&'static str]),
    /// An attached file.
    File,
}

/// One option of a command, as platforms with typed options (Discord) show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandOption {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: OptionKind,
    pub required: bool,
}

/// Everything about one command that a parser, a help text or a platform menu needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    pub id: CommandId,
    /// The canonical name, without `/`.
    pub name: &'static str,
    /// Older or platform-specific names that mean the same command.
    pub aliases: &'static [&'static str],
    /// The argument text's shape in `/help` ("" when it takes none).
    pub usage: &'static str,
    /// One line for platform menus (at most 100 characters, Discord's limit).
    pub summary: &'static str,
    /// The line `/help` shows.
    pub help: &'static str,
    /// Only admins may run it (the core checks; help and menus say so).
    pub admin_only: bool,
    pub options: &'static [CommandOption],
}

const fn text(name: &'static str, description: &'static str, required: bool) -> CommandOption {
    CommandOption {
        name,
        description,
        kind: OptionKind::Text,
        required,
    }
}

/// Every command, in the order help and menus list them.
pub const CATALOGUE: &[CommandSpec] = &[
    CommandSpec {
        id: CommandId::Ask,
        name: "ask",
        aliases: &[],
        usage: "QUESTION",
        summary: "Ask a question about your team's knowledge",
        help: "ask (a mention or a DM works too)",
        admin_only: false,
        options: &[text("question", "What you want to know", true)],
    },
    CommandSpec {
        id: CommandId::Ingest,
        name: "ingest",
        aliases: &[],
        usage: "",
        summary: "Add a file, a web page or some text to the team's knowledge (admins)",
        help: "add attached files, URLs or \"quoted text\" (on Telegram, or the replied message)",
        admin_only: true,
        options: &[
            CommandOption {
                name: "file",
                description: "A document (PDF, Markdown, text, HTML, subtitles, DOCX)",
                kind: OptionKind::File,
                required: false,
            },
            text("url", "An http(s) link to fetch", false),
            text("text", "Text to remember", false),
        ],
    },
    CommandSpec {
        id: CommandId::Forget,
        name: "forget",
        aliases: &[],
        usage: "SOURCE",
        summary: "Remove a source from the team's knowledge (admins)",
        help: "remove a source",
        admin_only: true,
        options: &[text(
            "source",
            "The source's name, as /sources lists it",
            true,
        )],
    },
    CommandSpec {
        id: CommandId::Sources,
        name: "sources",
        aliases: &[],
        usage: "",
        summary: "List what I know here",
        help: "list what I know here",
        admin_only: false,
        options: &[],
    },
    CommandSpec {
        id: CommandId::Reset,
        name: "reset",
        aliases: &[],
        usage: "",
        summary: "Forget our conversation here",
        help: "forget this conversation",
        admin_only: false,
        options: &[],
    },
    CommandSpec {
        id: CommandId::Stats,
        name: "stats",
        aliases: &[],
        usage: "",
        summary: "Knowledge, quota and memory figures",
        help: "knowledge, quota and memory figures",
        admin_only: false,
        options: &[],
    },
    CommandSpec {
        id: CommandId::KnowledgeChannel,
        name: "knowledge-channel",
        // `/knowledge` was Telegram's name for it before names were derived.
        aliases: &["knowledge"],
        usage: "on|off",
        summary: "Learn from every post in this channel, or stop (admins)",
        help: "learn from every post in this channel",
        admin_only: true,
        options: &[CommandOption {
            name: "mode",
            description: "on or off",
            kind: OptionKind::Choice(&["on", "off"]),
            required: true,
        }],
    },
    CommandSpec {
        id: CommandId::Help,
        name: "help",
        // Telegram sends /start when a user opens the bot.
        aliases: &["start"],
        usage: "",
        summary: "What I do and how to ask",
        help: "this text",
        admin_only: false,
        options: &[],
    },
];

impl CommandId {
    /// This command's catalogue entry.
    pub fn spec(self) -> &'static CommandSpec {
        CATALOGUE
            .iter()
            .find(|c| c.id == self)
            .expect("every command is in the catalogue")
    }
}

impl CommandSpec {
    /// The name on platforms whose command names allow only `[a-z0-9_]` (Telegram):
    /// `knowledge-channel` becomes `knowledge_channel`.
    pub fn telegram_name(&self) -> String {
        telegram_name(self.name)
    }

    /// The line `/help` shows for it.
    pub fn help_line(&self) -> String {
        let usage = if self.usage.is_empty() {
            String::new()
        } else {
            format!(" {}", self.usage)
        };
        let admins = if self.admin_only { " (admins)" } else { "" };
        format!("/{}{usage}: {}{admins}", self.name, self.help)
    }
}

/// The one rule from a canonical name to a Telegram-safe one.
pub fn telegram_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The command called `name` (without `/`, any case, with or without `@botname`), by its
/// canonical name, its Telegram name or an alias.
pub fn lookup(name: &str) -> Option<&'static CommandSpec> {
    let name = name.split('@').next().unwrap_or("").to_lowercase();
    CATALOGUE.iter().find(|c| {
        c.name == name || c.telegram_name() == name || c.aliases.iter().any(|a| *a == name)
    })
}

/// `/help`: what the bot does and every command.
pub fn help_text() -> String {
    let mut out = "I answer questions from your team's knowledge base, with sources. Mention me, \
                   reply to me, or DM me.\n"
        .to_owned();
    for command in CATALOGUE {
        out.push('\n');
        out.push_str(&command.help_line());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every id, listed by a match so a new variant fails to compile until it is added.
    fn all_ids() -> Vec<CommandId> {
        let every = |id: CommandId| match id {
            CommandId::Ask
            | CommandId::Ingest
            | CommandId::Forget
            | CommandId::Sources
            | CommandId::Reset
            | CommandId::Stats
            | CommandId::KnowledgeChannel
            | CommandId::Help => id,
        };
        [
            CommandId::Ask,
            CommandId::Ingest,
            CommandId::Forget,
            CommandId::Sources,
            CommandId::Reset,
            CommandId::Stats,
            CommandId::KnowledgeChannel,
            CommandId::Help,
        ]
        .map(every)
        .to_vec()
    }

    #[test]
    fn every_command_is_listed_once_and_found_by_each_of_its_names() {
        let ids = all_ids();
        assert_eq!(CATALOGUE.len(), ids.len());
        for id in ids {
            let spec = id.spec();
            assert_eq!(CATALOGUE.iter().filter(|c| c.id == id).count(), 1);
            assert_eq!(lookup(spec.name).map(|c| c.id), Some(id));
            assert_eq!(lookup(&spec.telegram_name()).map(|c| c.id), Some(id));
            assert_eq!(lookup(&spec.name.to_uppercase()).map(|c| c.id), Some(id));
            assert_eq!(
                lookup(&format!("{}@lore_bot", spec.telegram_name())).map(|c| c.id),
                Some(id)
            );
            for alias in spec.aliases {
                assert_eq!(lookup(alias).map(|c| c.id), Some(id), "{alias}");
            }
            assert!((1..=100).contains(&spec.summary.chars().count()), "{id:?}");
        }
        assert!(lookup("frobnicate").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn names_never_collide() {
        let mut names: Vec<String> = CATALOGUE
            .iter()
            .flat_map(|c| {
                let mut n = vec![c.name.to_owned()];
                n.extend(c.aliases.iter().map(|a| (*a).to_owned()));
                n
            })
            .collect();
        let before = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), before, "a name or alias is used twice");
    }

    #[test]
    fn telegram_names_use_underscores_only() {
        assert_eq!(
            CommandId::KnowledgeChannel.spec().telegram_name(),
            "knowledge_channel"
        );
        for c in CATALOGUE {
            let name = c.telegram_name();
            assert!(
                name.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn help_lists_every_command_and_marks_admin_ones() {
        let help = help_text();
        for c in CATALOGUE {
            assert!(
                help.contains(&format!("\n/{}", c.name)),
                "{} missing",
                c.name
            );
        }
        assert!(help.contains("/knowledge-channel on|off: "));
        assert!(help.contains("/forget SOURCE: remove a source (admins)"));
        assert!(help.contains("/help: this text"));
    }
}
