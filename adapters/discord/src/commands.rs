//! The slash commands lore registers, and how an invocation becomes the core's command text.

use lore_chat::commands::{CATALOGUE, CommandOption, CommandSpec, OptionKind};
use serenity::all::{
    AttachmentId, CommandDataOption, CommandDataOptionValue, CommandOptionType, CreateCommand,
    CreateCommandOption,
};

/// The commands the core understands, as Discord shows them: the shared catalogue.
pub fn definitions() -> Vec<CreateCommand> {
    CATALOGUE.iter().map(definition).collect()
}

fn definition(spec: &CommandSpec) -> CreateCommand {
    spec.options.iter().fold(
        CreateCommand::new(spec.name).description(spec.summary),
        |command, option| command.add_option(command_option(option)),
    )
}

fn command_option(option: &CommandOption) -> CreateCommandOption {
    let kind = match option.kind {
        OptionKind::Text | OptionKind::Choice(_) => CommandOptionType::String,
        OptionKind::File => CommandOptionType::Attachment,
    };
    let mut created =
        CreateCommandOption::new(kind, option.name, option.description).required(option.required);
    if let OptionKind::Choice(words) = option.kind {
        for word in words {
            created = created.add_string_choice(*word, *word);
        }
    }
    created
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

    #[test]
    fn every_catalogue_command_is_defined_with_its_options() {
        let defined: Vec<serde_json::Value> = definitions()
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect();
        assert_eq!(defined.len(), CATALOGUE.len());
        for spec in CATALOGUE {
            let command = defined
                .iter()
                .find(|c| c["name"] == spec.name)
                .unwrap_or_else(|| panic!("/{} is not defined", spec.name));
            assert_eq!(command["description"], spec.summary);
            let options = command["options"].as_array().cloned().unwrap_or_default();
            let names: Vec<&str> = options.iter().filter_map(|o| o["name"].as_str()).collect();
            let expected: Vec<&str> = spec.options.iter().map(|o| o.name).collect();
            assert_eq!(names, expected, "/{}", spec.name);
        }
        let mode = &defined
            .iter()
            .find(|c| c["name"] == "knowledge-channel")
            .unwrap()["options"][0];
        assert_eq!(mode["choices"].as_array().map(Vec::len), Some(2));
    }
}
