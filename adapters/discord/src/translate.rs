//! serenity's messages and interactions as `lore_chat` events: pure translation, no I/O.
//! Every event starts from [`event`], so the fields that place it are filled one way.

use std::sync::Arc;

use lore_chat::{Addressing, Attachment, Author, EventKind, IncomingEvent};
use serenity::all::{ChannelId, GuildId, Message, MessageId, User, UserId};

use crate::sink::CdnFile;

pub const PLATFORM: &str = "discord";

/// Where an event happened: the guild (None in a DM), the conversation's channel, and the
/// thread inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub guild: Option<GuildId>,
    /// The author, whose id is the tenant of a DM.
    pub user: Option<UserId>,
    pub channel: ChannelId,
    pub thread: Option<ChannelId>,
}

/// An event at `place` with what every event carries; the caller adds author, text,
/// attachments and addressing.
pub fn event(kind: EventKind, place: Place, message_id: String) -> IncomingEvent {
    IncomingEvent {
        platform: PLATFORM.into(),
        tenant: tenant(place.guild, place.user),
        channel: place.channel.get().to_string(),
        thread: place.thread.map(|t| t.get().to_string()),
        message_id,
        kind,
        ..Default::default()
    }
}

/// The tenant of a conversation: the guild, or the user in a DM.
pub fn tenant(guild: Option<GuildId>, user: Option<UserId>) -> String {
    match (guild, user) {
        (Some(g), _) => g.get().to_string(),
        (None, Some(u)) => u.get().to_string(),
        (None, None) => String::new(),
    }
}

/// The jump link of a message.
pub fn permalink(guild: Option<GuildId>, channel: ChannelId, message: MessageId) -> String {
    let place = guild.map_or_else(|| "@me".to_owned(), |g| g.get().to_string());
    format!("https://discord.com/channels/{place}/{channel}/{message}")
}

/// The author by id and shown name (server nickname, else global name, else user name),
/// with no roles and no admin rights: [`crate::roles`] adds those where they matter.
pub fn author(user: &User, nick: Option<&str>) -> Author {
    Author {
        id: user.id.get().to_string(),
        name: nick
            .or(user.global_name.as_deref())
            .unwrap_or(&user.name)
            .to_owned(),
        ..Default::default()
    }
}

pub fn attachment(a: &serenity::all::Attachment, client: &reqwest::Client) -> Attachment {
    Attachment {
        name: a.filename.clone(),
        size: u64::from(a.size),
        content_type: a.content_type.clone(),
        handle: Arc::new(CdnFile {
            client: client.clone(),
            url: a.url.clone(),
            name: a.filename.clone(),
            size: u64::from(a.size),
        }),
    }
}

/// Removes `<@bot>` and `<@!bot>` from `text`; true if there was one.
pub fn strip_mention(text: &str, bot: Option<UserId>) -> (String, bool) {
    let Some(bot) = bot else {
        return (text.trim().to_owned(), false);
    };
    let mut out = text.to_owned();
    let mut found = false;
    for tag in [format!("<@{bot}>"), format!("<@!{bot}>")] {
        if out.contains(&tag) {
            found = true;
            out = out.replace(&tag, " ");
        }
    }
    (out.split_whitespace().collect::<Vec<_>>().join(" "), found)
}

/// A new message: who wrote it, whether it addresses the bot, its text without the mention.
/// `place` is the conversation (a bot-opened thread belongs to its parent channel).
pub fn posted(
    m: &Message,
    place: Place,
    bot: Option<UserId>,
    client: &reqwest::Client,
) -> IncomingEvent {
    let (text, tagged) = strip_mention(&m.content, bot);
    let mentioned = tagged || bot.is_some_and(|b| m.mentions.iter().any(|u| u.id == b));
    let reply_to_bot = bot.is_some_and(|b| {
        m.referenced_message
            .as_ref()
            .is_some_and(|r| r.author.id == b)
    });
    let nick = m.member.as_ref().and_then(|member| member.nick.as_deref());
    IncomingEvent {
        author: author(&m.author, nick),
        text,
        attachments: m
            .attachments
            .iter()
            .map(|a| attachment(a, client))
            .collect(),
        addressing: Addressing {
            direct: place.guild.is_none(),
            mentioned,
            reply_to_bot,
            command: None,
        },
        permalink: Some(permalink(place.guild, m.channel_id, m.id)),
        timestamp: m.timestamp.to_rfc3339(),
        ..event(EventKind::Posted, place, m.id.get().to_string())
    }
}

/// A message read from a channel's history, as a knowledge post (None for bots' messages).
pub fn past_message(
    m: &Message,
    guild: Option<GuildId>,
    bot: Option<UserId>,
    client: &reqwest::Client,
) -> Option<IncomingEvent> {
    if m.author.bot {
        return None;
    }
    let place = Place {
        // History messages carry no guild id; the channel's guild is known.
        guild: m.guild_id.or(guild),
        user: Some(m.author.id),
        channel: m.channel_id,
        thread: None,
    };
    let mut event = posted(m, place, bot, client);
    // A past message is a knowledge post, never a question to answer now.
    event.addressing = Addressing {
        mentioned: event.addressing.mentioned,
        ..Default::default()
    };
    event.author.name = m
        .author
        .global_name
        .clone()
        .unwrap_or_else(|| m.author.name.clone());
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: serde_json::Value) -> Message {
        serde_json::from_value(json).unwrap()
    }

    fn user(id: u64, name: &str) -> serde_json::Value {
        serde_json::json!({"id": id.to_string(), "username": name, "discriminator": "0",
            "global_name": null, "avatar": null})
    }

    fn base(content: &str) -> serde_json::Value {
        serde_json::json!({
            "id": "900", "channel_id": "20", "guild_id": "10",
            "author": user(7, "ann"), "content": content,
            "timestamp": "2026-12-02T14:33:49.000Z", "edited_timestamp": null,
            "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": false, "type": 0,
        })
    }

    #[test]
    fn the_bot_mention_is_stripped_and_others_stay() {
        let bot = Some(UserId::new(42));
        let (text, found) = strip_mention("<@42> what is <@7>'s role?", bot);
        assert!(found);
        assert_eq!(text, "what is <@7>'s role?");
        let (text, found) = strip_mention("hey <@!42>  tea?", bot);
        assert!(found);
        assert_eq!(text, "hey tea?");
        assert!(!strip_mention("<@43> hi", bot).1);
    }

    #[test]
    fn permalinks_are_jump_links() {
        assert_eq!(
            permalink(Some(GuildId::new(1)), ChannelId::new(2), MessageId::new(3)),
            "https://discord.com/channels/1/2/3"
        );
        assert_eq!(
            permalink(None, ChannelId::new(2), MessageId::new(3)),
            "https://discord.com/channels/@me/2/3"
        );
    }

    #[test]
    fn a_mention_in_a_guild_becomes_an_addressed_event() {
        let m = message(base("<@42> where is oolong grown?"));
        let place = Place {
            guild: m.guild_id,
            user: Some(m.author.id),
            channel: ChannelId::new(19),
            thread: Some(m.channel_id),
        };
        let e = posted(&m, place, Some(UserId::new(42)), &reqwest::Client::new());
        assert_eq!(
            (e.platform.as_str(), e.tenant.as_str(), e.channel.as_str()),
            ("discord", "10", "19")
        );
        assert_eq!(e.thread.as_deref(), Some("20"));
        assert_eq!((e.message_id.as_str(), e.kind), ("900", EventKind::Posted));
        assert_eq!(e.text, "where is oolong grown?");
        assert!(e.addressing.mentioned && !e.addressing.direct);
        assert_eq!((e.author.id.as_str(), e.author.name.as_str()), ("7", "ann"));
        assert_eq!(
            e.permalink.as_deref(),
            Some("https://discord.com/channels/10/20/900")
        );
        assert!(e.timestamp.unwrap().starts_with("2026-12-02T14:33:49"));
    }

    #[test]
    fn a_dm_is_the_authors_tenant_and_history_is_never_a_question() {
        let mut json = base("hello");
        json.as_object_mut().unwrap().remove("guild_id");
        let dm = message(json);
        let place = Place {
            guild: None,
            user: Some(dm.author.id),
            channel: dm.channel_id,
            thread: None,
        };
        let e = posted(&dm, place, Some(UserId::new(42)), &reqwest::Client::new());
        assert_eq!(e.tenant, "7");
        assert!(e.addressing.direct);
        let past = past_message(
            &dm,
            Some(GuildId::new(10)),
            Some(UserId::new(42)),
            &reqwest::Client::new(),
        )
        .unwrap();
        assert_eq!(past.tenant, "10");
        assert!(!past.addressing.is_addressed());
        let mut json = base("beep");
        json["author"]["bot"] = serde_json::json!(true);
        assert!(past_message(&message(json), None, None, &reqwest::Client::new()).is_none());
    }

    #[test]
    fn a_deletion_is_placed_by_guild_alone() {
        let place = Place {
            guild: Some(GuildId::new(10)),
            user: None,
            channel: ChannelId::new(20),
            thread: None,
        };
        let e = event(EventKind::Deleted, place, "5".into());
        assert_eq!((e.tenant.as_str(), e.kind), ("10", EventKind::Deleted));
        assert!(e.text.is_empty() && e.attachments.is_empty());
    }
}
