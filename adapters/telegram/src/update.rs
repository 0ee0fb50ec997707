//! Telegram messages translated into `lore-chat` events: who wrote, whether the bot is
//! addressed (a private chat, an @mention, a reply to the bot, a command), the text without
//! the mention, and the attached document. Nothing here decides what the bot does.

use std::ops::Range;
use std::sync::Arc;

use lore_chat::commands::{self, CATALOGUE, CommandId};
use lore_chat::{Addressing, Attachment, Author, EventKind, IncomingEvent, SlashCommand};
use teloxide::types::{
    Chat, ChatKind, MessageEntity, MessageEntityKind, MessageId, PublicChatKind, ThreadId,
    UpdateKind, UserId,
};
use teloxide::types::{Message, Update};

use crate::files::{TelegramFile, TextFile};

/// The platform name that namespaces every key in the core.
pub const PLATFORM: &str = "telegram";

/// Telegram's account that stands for an anonymous group administrator.
const GROUP_ANONYMOUS_BOT: u64 = 1_087_968_824;

/// The command menu the bot registers (`setMyCommands`): the shared catalogue, under
/// Telegram-safe names.
pub fn menu() -> Vec<(String, &'static str)> {
    CATALOGUE
        .iter()
        .map(|c| (c.telegram_name(), c.summary))
        .collect()
}

/// The bot's own account, from `getMe`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: UserId,
    pub username: String,
}

/// A message translated, with what the adapter needs to reply and to check the author.
pub struct Translated {
    pub event: IncomingEvent,
    pub chat: Chat,
    pub message: MessageId,
    /// Forum topic the message belongs to (replies go there).
    pub topic: Option<ThreadId>,
    /// The Telegram user to ask `getChatMember` about, when admin rights may matter.
    pub check_admin: Option<UserId>,
}

/// Translates an update; None for kinds the bot does not handle or malformed ones.
pub fn translate(update: &Update, me: &Identity, files: &TelegramFile) -> Option<Translated> {
    let (message, kind, channel_post) = match &update.kind {
        UpdateKind::Message(m) => (m, EventKind::Posted, false),
        UpdateKind::EditedMessage(m) => (m, EventKind::Edited, false),
        UpdateKind::ChannelPost(m) => (m, EventKind::Posted, true),
        UpdateKind::EditedChannelPost(m) => (m, EventKind::Edited, true),
        _ => return None,
    };
    translate_message(message, kind, channel_post, me, files)
}

fn translate_message(
    m: &Message,
    kind: EventKind,
    channel_post: bool,
    me: &Identity,
    files: &TelegramFile,
) -> Option<Translated> {
    if m.from.as_ref().is_some_and(|u| u.id == me.id) {
        return None;
    }
    let private = m.chat.is_private();
    let (raw_text, entities) = match (m.text(), m.caption()) {
        (Some(t), _) => (t, m.entities().unwrap_or_default()),
        (None, Some(c)) => (c, m.caption_entities().unwrap_or_default()),
        (None, None) => ("", &[][..]),
    };
    let (text, mentioned) = strip_mentions(raw_text, entities, me);
    let command = parse_command(&text, me, private);
    let reply_to_bot = m
        .reply_to_message()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| u.id == me.id);
    let addressing = Addressing {
        direct: private,
        mentioned,
        reply_to_bot,
        command: command.clone(),
    };
    let (author, check_admin) = author(m, channel_post);
    let mut attachments = Vec::new();
    if let Some(doc) = m.document() {
        attachments.push(files.attachment(doc));
    }
    if command
        .as_ref()
        .is_some_and(|c| commands::lookup(&c.name).is_some_and(|s| s.id == CommandId::Ingest))
        && let Some(replied) = m.reply_to_message()
    {
        // `/ingest` as a reply: the replied document, or the replied message's text.
        if let Some(doc) = replied.document() {
            attachments.push(files.attachment(doc));
        } else if let Some(quoted) = replied.text().or(replied.caption())
            && !quoted.trim().is_empty()
        {
            attachments.push(Attachment {
                name: format!("telegram-message-{}.txt", replied.id.0),
                size: quoted.len() as u64,
                content_type: Some("text/plain".into()),
                handle: Arc::new(TextFile(quoted.to_owned())),
            });
        }
    }
    let timestamp = match kind {
        EventKind::Edited => m.edit_date().copied().unwrap_or(m.date),
        _ => m.date,
    };
    // A command's text stays as typed, so the core's own parser sees `/name args` too.
    let event = IncomingEvent {
        platform: PLATFORM.into(),
        tenant: m.chat.id.0.to_string(),
        channel: m.chat.id.0.to_string(),
        thread: m
            .is_topic_message
            .then(|| m.thread_id.map(|t| t.0.0.to_string()))
            .flatten(),
        message_id: m.id.0.to_string(),
        kind,
        author,
        text: text.trim().to_owned(),
        attachments,
        addressing,
        permalink: permalink(&m.chat, m.id),
        timestamp: Some(rfc3339(timestamp.timestamp())),
    };
    Some(Translated {
        topic: if m.is_topic_message {
            m.thread_id
        } else {
            None
        },
        chat: m.chat.clone(),
        message: m.id,
        check_admin: if private { None } else { check_admin },
        event,
    })
}

/// The author, and the user whose admin rights need a `getChatMember` check.
fn author(m: &Message, channel_post: bool) -> (Author, Option<UserId>) {
    let chat_name = |c: &Chat| {
        c.title()
            .or(c.username())
            .map(str::to_owned)
            .unwrap_or_else(|| c.id.0.to_string())
    };
    if let Some(sender) = &m.sender_chat {
        // A channel post, or a post "on behalf of" the group by an anonymous admin: both
        // come only from the chat's administrators. A linked channel's forward does not.
        let own_chat = sender.id == m.chat.id;
        let name = m
            .author_signature()
            .map(str::to_owned)
            .unwrap_or_else(|| chat_name(sender));
        return (
            Author {
                id: format!("chat{}", sender.id.0),
                name,
                roles: Vec::new(),
                is_admin: own_chat || channel_post,
            },
            None,
        );
    }
    match &m.from {
        Some(user) if user.id.0 != GROUP_ANONYMOUS_BOT => (
            Author {
                id: user.id.0.to_string(),
                name: user.full_name(),
                roles: Vec::new(),
                // In a private chat the user is the only member: their DM is their own tenant.
                is_admin: m.chat.is_private(),
            },
            Some(user.id),
        ),
        _ => (
            Author {
                id: format!("chat{}", m.chat.id.0),
                name: chat_name(&m.chat),
                roles: Vec::new(),
                is_admin: channel_post,
            },
            None,
        ),
    }
}

/// Removes every mention of the bot (`@username`, or a text mention of its account) and
/// says whether there was one.
fn strip_mentions(text: &str, entities: &[MessageEntity], me: &Identity) -> (String, bool) {
    let mut cut: Vec<Range<usize>> = entities
        .iter()
        .filter(|e| match &e.kind {
            MessageEntityKind::TextMention { user } => user.id == me.id,
            _ => false,
        })
        .filter_map(|e| utf16_range(text, e.offset, e.length))
        .collect();
    // `@username` mentions, found in the text itself so they count even without entities.
    let handle = format!("@{}", me.username.to_lowercase());
    let lower = text.to_lowercase();
    // Lowercasing can change byte lengths (rare scripts); then only entities count.
    if lower.len() == text.len() && !me.username.is_empty() {
        let mut from = 0;
        while let Some(i) = lower[from..].find(&handle) {
            let start = from + i;
            let end = start + handle.len();
            let word_ends = lower[end..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let word_starts = lower[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '/'));
            if word_ends && word_starts {
                cut.push(start..end);
            }
            from = end;
        }
    }
    if cut.is_empty() {
        return (text.to_owned(), false);
    }
    cut.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in cut {
        if r.start >= at {
            out.push_str(&text[at..r.start]);
            at = r.end;
        }
    }
    out.push_str(&text[at..]);
    let out = out
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (out, true)
}

/// A UTF-16 entity range as a byte range of `text`; None when it does not fit the text
/// or falls inside a character (a malformed entity is ignored, never a panic).
fn utf16_range(text: &str, offset: usize, length: usize) -> Option<Range<usize>> {
    let end_units = offset.checked_add(length)?;
    let (mut start, mut end) = (None, None);
    let mut units = 0;
    for (i, c) in text.char_indices().chain([(text.len(), '\0')]) {
        if units == offset {
            start = Some(i);
        }
        if units == end_units {
            end = Some(i);
            break;
        }
        units += c.len_utf16();
    }
    Some(start?..end?)
}

/// A `/command[@bot] args` at the start of the text. In a group, a command for another bot,
/// or one we do not know without our `@username`, is not a command to us.
fn parse_command(text: &str, me: &Identity, private: bool) -> Option<SlashCommand> {
    let rest = text.trim_start().strip_prefix('/')?;
    let (word, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let (name, target) = match word.split_once('@') {
        Some((name, target)) => (name, Some(target)),
        None => (word, None),
    };
    if name.is_empty() {
        return None;
    }
    let ours = target.map(|t| t.eq_ignore_ascii_case(&me.username));
    if ours == Some(false) {
        return None;
    }
    // In groups, other commands without `@botname` belong to other bots.
    let known = commands::lookup(name);
    if !private && ours.is_none() && known.is_none() {
        return None;
    }
    Some(SlashCommand {
        name: known.map_or_else(|| name.to_lowercase(), |c| c.name.to_owned()),
        args: args.trim().to_owned(),
    })
}

/// Unix seconds as RFC 3339 UTC (`2026-12-02T14:33:49Z`), by the civil-from-days algorithm.
fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A link to the message where Telegram has one (supergroups and channels).
fn permalink(chat: &Chat, id: MessageId) -> Option<String> {
    let ChatKind::Public(public) = &chat.kind else {
        return None;
    };
    let username = match &public.kind {
        PublicChatKind::Channel(c) => c.username.as_deref(),
        PublicChatKind::Supergroup(s) => s.username.as_deref(),
        PublicChatKind::Group => return None,
    };
    match username {
        Some(name) => Some(format!("https://t.me/{name}/{}", id.0)),
        // Supergroup and channel ids are -100 followed by the bare id.
        None => {
            let bare = chat.id.0.checked_neg()?.checked_sub(1_000_000_000_000)?;
            (bare > 0).then(|| format!("https://t.me/c/{bare}/{}", id.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            id: UserId(42),
            username: "LoreBot".into(),
        }
    }

    #[test]
    fn mentions_are_stripped_case_insensitively() {
        let (text, mentioned) = strip_mentions("@lorebot what is oolong?", &[], &me());
        assert!(mentioned);
        assert_eq!(text, "what is oolong?");
        let (text, mentioned) = strip_mentions("ask @LoreBotX or mail a@lorebot", &[], &me());
        assert!(!mentioned, "{text}");
    }

    #[test]
    fn entity_ranges_are_utf16_and_malformed_ones_are_ignored() {
        let text = "😀 ab";
        assert_eq!(utf16_range(text, 3, 2), Some(5..7));
        assert_eq!(utf16_range(text, 1, 1), None, "inside a surrogate pair");
        assert_eq!(utf16_range(text, 3, 99), None);
        assert_eq!(utf16_range(text, usize::MAX, 2), None);
    }

    #[test]
    fn commands_for_other_bots_or_unknown_in_groups_are_not_ours() {
        let me = me();
        let c = parse_command("/ask@LoreBot why?", &me, false).unwrap();
        assert_eq!((c.name.as_str(), c.args.as_str()), ("ask", "why?"));
        assert!(parse_command("/ask@OtherBot why?", &me, false).is_none());
        assert!(parse_command("/weather", &me, false).is_none());
        assert!(parse_command("/weather", &me, true).is_some());
        for typed in [
            "/knowledge on",
            "/knowledge_channel on",
            "/knowledge-channel on",
        ] {
            let k = parse_command(typed, &me, false).unwrap();
            assert_eq!(
                (k.name.as_str(), k.args.as_str()),
                ("knowledge-channel", "on"),
                "{typed}"
            );
        }
        assert!(parse_command("just text", &me, true).is_none());
    }

    #[test]
    fn the_menu_offers_every_catalogue_command_under_a_telegram_name() {
        let menu = menu();
        assert_eq!(menu.len(), CATALOGUE.len());
        for spec in CATALOGUE {
            let name = spec.telegram_name();
            let (_, about) = menu
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("/{name} is not in the menu"));
            assert_eq!(*about, spec.summary);
            // Telegram's rules for command names and descriptions.
            assert!((1..=32).contains(&name.len()), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
            assert!((3..=256).contains(&about.chars().count()), "{name}");
            // What the menu offers in a group is a command to us, and the core's own.
            let picked = parse_command(&format!("/{name} x"), &me(), false).unwrap();
            assert_eq!(commands::lookup(&picked.name).map(|c| c.id), Some(spec.id));
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_869_229), "2026-11-28T12:33:49Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn permalinks_use_the_bare_id_or_the_username() {
        let chat: Chat = serde_json::from_value(serde_json::json!(
            {"id": -1001234567890i64, "type": "supergroup", "title": "Team"}
        ))
        .unwrap();
        assert_eq!(
            permalink(&chat, MessageId(7)).as_deref(),
            Some("https://t.me/c/1234567890/7")
        );
        let dm: Chat = serde_json::from_value(serde_json::json!(
            {"id": 5, "type": "private", "first_name": "Ann"}
        ))
        .unwrap();
        assert_eq!(permalink(&dm, MessageId(7)), None);
    }
}
