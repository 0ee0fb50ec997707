//! The slash commands lore registers, and how an invocation becomes the core's command text.

use serenity::all::{
    AttachmentId, CommandDataOption, CommandDataOptionValue, CommandOptionType, CreateCommand,
    CreateCommandOption,
};

/// The commands the core understands, as Discord shows them.
pub fn definitions() -> Vec<CreateCommand> {
    let text = |name: &str, description: &str, required: bool| {
        CreateCommandOption::new(CommandOptionType::String, name, description).required(required)
    };
    vec![
        CreateCommand::new("ask")
            .description("Ask a question about your team's knowledge")
            .add_option(text("question", "What you want to know", true)),
        CreateCommand::new("ingest")
            .description("Add a file, a web page or some text to the team's knowledge (admins)")
            .add_option(CreateCommandOption::new(
                CommandOptionType::Attachment,
                "file",
                "A document (PDF, Markdown, text, HTML, subtitles, DOCX)",
            ))
            .add_option(text("url", "An http(s) link to fetch", false))
            .add_option(text("text", "Text to remember", false)),
        CreateCommand::new("forget")
            .description("Remove a source from the team's knowledge (admins)")
            .add_option(text(
                "source",
                "The source's name, as /sources lists it",
                true,
            )),
        CreateCommand::new("sources").description("List what I know in this server"),
        CreateCommand::new("reset").description("Forget our conversation in this channel"),
        CreateCommand::new("stats").description("Knowledge, quota and memory figures"),
        CreateCommand::new("knowledge-channel")
            .description("Learn from every post in this channel, or stop (admins)")
            .add_option(
                text("mode", "on or off", true)
                    .add_string_choice("on", "on")
                    .add_string_choice("off", "off"),
            ),
        CreateCommand::new("help").description("What I do and how to ask"),
    ]
}

/// The argument text of an invocation (string options in order, space separated) and the
/// attachments it carries.
pub fn arguments(options: &[CommandDataOption]) -> (String, Vec<AttachmentId>) {
    let mut words = Vec::new();
    let mut files = Vec::new();
    for option in options {
        match &option.value {
            CommandDataOptionValue::String(s) => words.push(s.trim().to_owned()),
            CommandDataOptionValue::Integer(n) => words.push(n.to_string()),
            CommandDataOptionValue::Number(n) => words.push(n.to_string()),
            CommandDataOptionValue::Boolean(b) => words.push(if *b { "on" } else { "off" }.into()),
            CommandDataOptionValue::Attachment(id) => files.push(*id),
            // lore defines no other option types; an unknown one is ignored, not fatal.
            _ => {}
        }
    }
    words.retain(|w| !w.is_empty());
    (words.join(" "), files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_name_is_valid_for_discord() {
        for command in definitions() {
            let json = serde_json::to_value(&command).unwrap();
            let name = json["name"].as_str().unwrap();
            assert!(
                (1..=32).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_'),
                "{name}"
            );
            let description = json["description"].as_str().unwrap();
            assert!((1..=100).contains(&description.chars().count()), "{name}");
        }
    }
}
