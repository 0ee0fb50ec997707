//! The bot's commands, one module each. A command returns the reply's final text or a
//! reason ([`BotError`]); the engine delivers either.

pub mod ask;
pub mod forget;
pub mod help;
pub mod ingest;
pub mod knowledge_channel;
pub mod reset;
pub mod sources;
pub mod stats;

use std::sync::Arc;

use lore_chat::commands::{self, CommandId};
use lore_chat::{IncomingEvent, ReplySink};

use super::memory::ConversationKey;
use super::reply::Streamer;
use super::{BotError, Core};

/// What the command needs to know about the message it answers.
pub struct Ctx<'a> {
    pub core: &'a Arc<Core>,
    pub event: &'a IncomingEvent,
    pub key: &'a ConversationKey,
    pub sink: &'a Arc<dyn ReplySink>,
}

/// A parsed command; which commands exist, and their names, is `lore_chat`'s catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ask(String),
    Ingest(String),
    Forget(String),
    Sources,
    Reset,
    Help,
    Stats,
    KnowledgeChannel(bool),
}

impl Command {
    /// The platform's slash command if there is one, else a leading `/name` in the text,
    /// else a question.
    pub fn parse(event: &IncomingEvent) -> Result<Self, BotError> {
        let (name, args) = match &event.addressing.command {
            Some(c) => (c.name.clone(), c.args.trim().to_owned()),
            None => match event.text.trim().strip_prefix('/') {
                Some(rest) => {
                    let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    (name.to_owned(), args.trim().to_owned())
                }
                None => return Ok(Command::Ask(event.text.trim().to_owned())),
            },
        };
        // Telegram addresses commands as /name@botname in groups; lookup drops the target.
        let Some(spec) = commands::lookup(&name) else {
            let name = name.split('@').next().unwrap_or("").to_lowercase();
            return Err(BotError::Usage(format!(
                "there is no /{name} command; /help lists them"
            )));
        };
        Ok(match spec.id {
            CommandId::Ask => Command::Ask(args),
            CommandId::Ingest => Command::Ingest(args),
            CommandId::Forget => Command::Forget(args),
            CommandId::Sources => Command::Sources,
            CommandId::Reset => Command::Reset,
            CommandId::Help => Command::Help,
            CommandId::Stats => Command::Stats,
            CommandId::KnowledgeChannel => match args.to_lowercase().as_str() {
                "on" => Command::KnowledgeChannel(true),
                "off" => Command::KnowledgeChannel(false),
                _ => {
                    return Err(BotError::Usage(format!(
                        "usage: /{} {}",
                        spec.name, spec.usage
                    )));
                }
            },
        })
    }

    /// The catalogue entry this command was parsed from.
    pub fn id(&self) -> CommandId {
        match self {
            Command::Ask(_) => CommandId::Ask,
            Command::Ingest(_) => CommandId::Ingest,
            Command::Forget(_) => CommandId::Forget,
            Command::Sources => CommandId::Sources,
            Command::Reset => CommandId::Reset,
            Command::Help => CommandId::Help,
            Command::Stats => CommandId::Stats,
            Command::KnowledgeChannel(_) => CommandId::KnowledgeChannel,
        }
    }

    /// Runs the command; `out` shows a streaming answer's progress.
    pub async fn run(self, ctx: &Ctx<'_>, out: &mut Streamer) -> Result<String, BotError> {
        match self {
            Command::Ask(question) => ask::run(ctx, out, &question).await,
            Command::Ingest(args) => ingest::run(ctx, &args).await,
            Command::Forget(source) => forget::run(ctx, &source).await,
            Command::Sources => sources::run(ctx).await,
            Command::Reset => reset::run(ctx).await,
            Command::Help => Ok(help::text()),
            Command::Stats => stats::run(ctx).await,
            Command::KnowledgeChannel(on) => knowledge_channel::run(ctx, on).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use lore_chat::SlashCommand;

    use super::*;

    fn text(t: &str) -> IncomingEvent {
        IncomingEvent {
            text: t.into(),
            ..Default::default()
        }
    }

    #[test]
    fn commands_come_from_slash_commands_or_a_leading_slash() {
        assert_eq!(
            Command::parse(&text("what is oolong?")).unwrap(),
            Command::Ask("what is oolong?".into())
        );
        assert_eq!(Command::parse(&text("/reset")).unwrap(), Command::Reset);
        assert_eq!(
            Command::parse(&text("/knowledge_channel@lore_bot ON")).unwrap(),
            Command::KnowledgeChannel(true)
        );
        let mut slash = text("");
        slash.addressing.command = Some(SlashCommand {
            name: "forget".into(),
            args: " notes.md ".into(),
        });
        assert_eq!(
            Command::parse(&slash).unwrap(),
            Command::Forget("notes.md".into())
        );
        assert!(Command::parse(&text("/frobnicate")).is_err());
    }

    /// A sample argument each command accepts.
    fn sample_args(id: CommandId) -> &'static str {
        match id {
            CommandId::KnowledgeChannel => "on",
            _ => "x",
        }
    }

    #[test]
    fn every_catalogue_name_parses_to_its_command() {
        for spec in lore_chat::CATALOGUE {
            let args = sample_args(spec.id);
            let mut names = vec![spec.name.to_owned(), spec.telegram_name()];
            names.extend(spec.aliases.iter().map(|a| (*a).to_owned()));
            for name in names {
                let typed = Command::parse(&text(&format!("/{name} {args}"))).unwrap();
                assert_eq!(typed.id(), spec.id, "/{name}");
                let mut slash = text("");
                slash.addressing.command = Some(SlashCommand {
                    name: name.clone(),
                    args: args.into(),
                });
                assert_eq!(Command::parse(&slash).unwrap().id(), spec.id, "{name}");
            }
        }
    }

    #[test]
    fn help_lists_every_command() {
        let help = help::text();
        for spec in lore_chat::CATALOGUE {
            assert!(help.contains(&spec.help_line()), "{} missing", spec.name);
        }
    }
}
