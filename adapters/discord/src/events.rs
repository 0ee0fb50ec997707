//! Gateway events → `lore_chat` events: messages (posted, edited, deleted), slash commands,
//! and READY (command registration, intent check).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lore_chat::{
    Addressing, Attachment, Author, ChannelHistory, ChatHandler, EventKind, IncomingEvent,
    ReplySink, SlashCommand,
};
use serenity::all::{
    ApplicationFlags, AutoArchiveDuration, ChannelId, Command, CommandInteraction, Context,
    CreateThread, EventHandler, GuildId, Http, Interaction, Message, MessageId, MessageUpdateEvent,
    Permissions, Ready, RoleId, User, UserId,
};

use crate::DiscordSettings;
use crate::commands;
use crate::sink::{CdnFile, ChannelSink, History, InteractionSink, MessageMapper};

const PLATFORM: &str = "discord";
/// How often the typing indicator is renewed while an answer is in the making.
const TYPING_RENEWAL: Duration = Duration::from_secs(8);
/// Longest an attachment download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a guild's roles are trusted before they are read again.
const ROLES_TTL: Duration = Duration::from_secs(300);

struct GuildRoles {
    read: Instant,
    /// Role id → (name, permissions); the @everyone role has the guild's id.
    roles: HashMap<RoleId, (String, Permissions)>,
}

/// The serenity event handler: translates, submits to the core, and shows typing meanwhile.
pub struct Handler {
    settings: DiscordSettings,
    core: Arc<dyn ChatHandler>,
    command_guild: Option<GuildId>,
    bot: Arc<OnceLock<UserId>>,
    commands_registered: AtomicBool,
    roles: Mutex<HashMap<GuildId, Arc<GuildRoles>>>,
    downloads: reqwest::Client,
    /// Guild messages seen with no text at all (a sign the Message Content intent is off).
    empty_messages: AtomicUsize,
    /// Threads the bot opened for answers → their parent channel, so a follow-up in the
    /// thread continues the same conversation.
    threads: Mutex<HashMap<ChannelId, ChannelId>>,
}

/// Threads remembered at most; older ones then start fresh conversations.
const MAX_THREADS: usize = 10_000;

impl Handler {
    pub fn new(
        settings: DiscordSettings,
        core: Arc<dyn ChatHandler>,
        command_guild: Option<GuildId>,
    ) -> Self {
        Self {
            settings,
            core,
            command_guild,
            bot: Arc::default(),
            commands_registered: AtomicBool::new(false),
            roles: Mutex::default(),
            // A stalled CDN must not hold the channel's queue forever.
            downloads: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(DOWNLOAD_TIMEOUT)
                .build()
                .unwrap_or_default(),
            empty_messages: AtomicUsize::new(0),
            threads: Mutex::default(),
        }
    }

    /// The conversation's channel and thread: a thread the bot opened for an answer belongs
    /// to its parent channel's conversation.
    fn conversation_channel(&self, channel: ChannelId) -> (ChannelId, Option<ChannelId>) {
        match self.threads.lock().expect("not poisoned").get(&channel) {
            Some(parent) => (*parent, Some(channel)),
            None => (channel, None),
        }
    }

    /// Opens a thread on the question for its answer; None (answer in the channel) when
    /// Discord refuses, e.g. because the question already is in a thread.
    async fn open_thread(&self, http: &Http, msg: &Message, question: &str) -> Option<ChannelId> {
        let mut name: String = question.chars().take(90).collect();
        if name.trim().is_empty() {
            name = "Question".into();
        }
        let thread = CreateThread::new(name).auto_archive_duration(AutoArchiveDuration::OneDay);
        match msg
            .channel_id
            .create_thread_from_message(http, msg.id, thread)
            .await
        {
            Ok(thread) => {
                let mut threads = self.threads.lock().expect("not poisoned");
                if threads.len() >= MAX_THREADS {
                    threads.clear();
                }
                threads.insert(thread.id, msg.channel_id);
                Some(thread.id)
            }
            Err(e) => {
                tracing::debug!(channel = %msg.channel_id, error = %e, "no thread for the answer; replying in the channel");
                None
            }
        }
    }

    /// A guild's roles, read through the API at most every few minutes.
    async fn guild_roles(&self, http: &Http, guild: GuildId) -> Option<Arc<GuildRoles>> {
        if let Some(cached) = self.roles.lock().expect("not poisoned").get(&guild)
            && cached.read.elapsed() < ROLES_TTL
        {
            return Some(cached.clone());
        }
        match http.get_guild_roles(guild).await {
            Ok(list) => {
                let roles = Arc::new(GuildRoles {
                    read: Instant::now(),
                    roles: list
                        .into_iter()
                        .map(|r| (r.id, (r.name, r.permissions)))
                        .collect(),
                });
                self.roles
                    .lock()
                    .expect("not poisoned")
                    .insert(guild, roles.clone());
                Some(roles)
            }
            Err(e) => {
                tracing::warn!(%guild, error = %e, "could not read the guild's roles; nobody counts as admin by role");
                None
            }
        }
    }

    /// The author as the core sees them: names of their roles, and admin when they hold
    /// Manage Server (or Administrator). Configured admin roles are the core's decision.
    async fn author(
        &self,
        http: &Http,
        user: &User,
        nick: Option<&str>,
        guild: Option<GuildId>,
        member_roles: &[RoleId],
        member_permissions: Option<Permissions>,
    ) -> Author {
        let mut author = Author {
            id: user.id.get().to_string(),
            name: nick
                .or(user.global_name.as_deref())
                .unwrap_or(&user.name)
                .to_owned(),
            roles: Vec::new(),
            is_admin: false,
        };
        let Some(guild) = guild else {
            return author;
        };
        let mut permissions = member_permissions.unwrap_or_else(Permissions::empty);
        if let Some(known) = self.guild_roles(http, guild).await {
            let everyone = RoleId::new(guild.get());
            for id in member_roles.iter().chain(std::iter::once(&everyone)) {
                if let Some((name, perms)) = known.roles.get(id) {
                    if *id != everyone {
                        author.roles.push(name.clone());
                    }
                    // The interaction's own permissions are authoritative when given.
                    if member_permissions.is_none() {
                        permissions |= *perms;
                    }
                }
            }
        }
        author.is_admin = permissions.manage_guild() || permissions.administrator();
        author
    }

    fn history(
        &self,
        http: &Arc<Http>,
        channel: ChannelId,
        guild: Option<GuildId>,
    ) -> Arc<dyn ChannelHistory> {
        let bot = self.bot.clone();
        let downloads = self.downloads.clone();
        let map: MessageMapper = Arc::new(move |m: &Message| {
            // History messages carry no guild id; the channel's guild is known.
            past_message(m, guild, bot.get().copied(), &downloads)
        });
        Arc::new(History {
            http: http.clone(),
            channel,
            map,
        })
    }

    async fn register_commands(&self, http: &Http) {
        if self.commands_registered.swap(true, Ordering::SeqCst) {
            return;
        }
        let definitions = commands::definitions();
        let result = match self.command_guild {
            Some(guild) => guild.set_commands(http, definitions).await.map(|c| c.len()),
            None => Command::set_global_commands(http, definitions)
                .await
                .map(|c| c.len()),
        };
        match result {
            Ok(n) => {
                tracing::info!(commands = n, guild = ?self.command_guild, "discord: slash commands registered")
            }
            Err(e) => {
                self.commands_registered.store(false, Ordering::SeqCst);
                tracing::warn!(error = %e, "discord: slash commands not registered; retrying at the next READY");
            }
        }
    }

    async fn slash_command(&self, ctx: &Context, command: CommandInteraction) {
        // Discord's 3-second deadline: acknowledge before anything else.
        if let Err(e) = command.defer(&ctx.http).await {
            tracing::warn!(channel = %command.channel_id, command = %command.data.name, error = %e, "could not acknowledge a slash command");
            return;
        }
        let command = Arc::new(command);
        let guild = command.guild_id;
        let (user, nick, roles, permissions) = match &command.member {
            Some(m) => (
                &m.user,
                m.nick.as_deref(),
                m.roles.as_slice(),
                m.permissions,
            ),
            None => (&command.user, None, &[][..], None),
        };
        let author = self
            .author(&ctx.http, user, nick, guild, roles, permissions)
            .await;
        let (args, files) = commands::arguments(&command.data.options);
        let attachments = files
            .iter()
            .filter_map(|id| command.data.resolved.attachments.get(id))
            .map(|a| attachment(a, &self.downloads))
            .collect();
        let event = IncomingEvent {
            platform: PLATFORM.into(),
            tenant: tenant(guild, user.id),
            channel: command.channel_id.get().to_string(),
            thread: None,
            message_id: format!("interaction-{}", command.id.get()),
            kind: EventKind::Posted,
            author,
            text: args.clone(),
            attachments,
            addressing: Addressing {
                direct: guild.is_none(),
                command: Some(SlashCommand {
                    name: command.data.name.clone(),
                    args,
                }),
                ..Default::default()
            },
            permalink: None,
            timestamp: None,
        };
        let sink = Arc::new(InteractionSink {
            http: ctx.http.clone(),
            interaction: command.clone(),
            sent: AtomicUsize::new(0),
            history: self.history(&ctx.http, command.channel_id, guild),
        });
        let handled = self.core.submit(event, sink.clone());
        tokio::spawn(async move {
            let _ = handled.await;
            // A deferred response left empty would spin "thinking…" until Discord gives up.
            if sink.sent.load(Ordering::Relaxed) == 0 {
                let _ = sink.send("✓").await.map_err(|e| {
                    tracing::warn!(error = %e, "could not complete a slash command");
                });
            }
        });
    }
}

/// The tenant of a conversation: the guild, or the user in a DM.
fn tenant(guild: Option<GuildId>, user: UserId) -> String {
    match guild {
        Some(g) => g.get().to_string(),
        None => user.get().to_string(),
    }
}

/// The jump link of a message.
fn permalink(guild: Option<GuildId>, channel: ChannelId, message: MessageId) -> String {
    let place = guild.map_or_else(|| "@me".to_owned(), |g| g.get().to_string());
    format!("https://discord.com/channels/{place}/{channel}/{message}")
}

fn attachment(a: &serenity::all::Attachment, client: &reqwest::Client) -> Attachment {
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
fn strip_mention(text: &str, bot: Option<UserId>) -> (String, bool) {
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

/// A message read from a channel's history, as a knowledge post (None for bots' messages).
fn past_message(
    m: &Message,
    guild: Option<GuildId>,
    bot: Option<UserId>,
    client: &reqwest::Client,
) -> Option<IncomingEvent> {
    if m.author.bot {
        return None;
    }
    let guild = m.guild_id.or(guild);
    let (text, mentioned) = strip_mention(&m.content, bot);
    Some(IncomingEvent {
        platform: PLATFORM.into(),
        tenant: tenant(guild, m.author.id),
        channel: m.channel_id.get().to_string(),
        thread: None,
        message_id: m.id.get().to_string(),
        kind: EventKind::Posted,
        author: Author {
            id: m.author.id.get().to_string(),
            name: m
                .author
                .global_name
                .clone()
                .unwrap_or_else(|| m.author.name.clone()),
            ..Default::default()
        },
        text,
        attachments: m
            .attachments
            .iter()
            .map(|a| attachment(a, client))
            .collect(),
        addressing: Addressing {
            mentioned,
            ..Default::default()
        },
        permalink: Some(permalink(guild, m.channel_id, m.id)),
        timestamp: m.timestamp.to_rfc3339(),
    })
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.bot.set(ready.user.id);
        tracing::info!(
            user = %ready.user.name,
            shard = ?ready.shard.map(|s| (s.id.0, s.total)),
            guilds = ready.guilds.len(),
            "discord: connected"
        );
        let flags = ready.application.flags;
        if !flags.intersects(
            ApplicationFlags::GATEWAY_MESSAGE_CONTENT
                | ApplicationFlags::GATEWAY_MESSAGE_CONTENT_LIMITED,
        ) {
            tracing::warn!(
                "discord: the Message Content intent is not enabled for this application, so guild \
                 messages arrive without text; enable it under Bot → Privileged Gateway Intents"
            );
        }
        self.register_commands(&ctx.http).await;
    }

    async fn message(&self, ctx: Context, msg: Message) {
        // The bot's own messages and other bots' never reach the core.
        if msg.author.bot {
            return;
        }
        let bot = self.bot.get().copied();
        let guild = msg.guild_id;
        let (text, tagged) = strip_mention(&msg.content, bot);
        let mentioned = tagged || bot.is_some_and(|b| msg.mentions.iter().any(|u| u.id == b));
        let reply_to_bot = bot.is_some_and(|b| {
            msg.referenced_message
                .as_ref()
                .is_some_and(|r| r.author.id == b)
        });
        if guild.is_some()
            && msg.content.is_empty()
            && msg.attachments.is_empty()
            && msg.embeds.is_empty()
            && msg.sticker_items.is_empty()
            && self.empty_messages.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!(channel = %msg.channel_id, "discord: a guild message arrived without text; is the Message Content intent enabled for this bot?");
        }
        let addressing = Addressing {
            direct: guild.is_none(),
            mentioned,
            reply_to_bot,
            command: None,
        };
        let addressed = addressing.is_addressed();
        let author = if addressed {
            let (nick, roles) = match &msg.member {
                Some(m) => (m.nick.as_deref(), m.roles.as_slice()),
                None => (None, &[][..]),
            };
            self.author(&ctx.http, &msg.author, nick, guild, roles, None)
                .await
        } else {
            Author {
                id: msg.author.id.get().to_string(),
                name: msg
                    .member
                    .as_ref()
                    .and_then(|m| m.nick.clone())
                    .or_else(|| msg.author.global_name.clone())
                    .unwrap_or_else(|| msg.author.name.clone()),
                ..Default::default()
            }
        };
        let (channel, mut thread) = self.conversation_channel(msg.channel_id);
        let (mut reply_channel, mut reply_to) = (msg.channel_id, addressed.then_some(msg.id));
        if addressed
            && guild.is_some()
            && thread.is_none()
            && self.settings.answer_in_thread
            && let Some(opened) = self.open_thread(&ctx.http, &msg, &text).await
        {
            thread = Some(opened);
            reply_channel = opened;
            // The thread starts from the question, so the answer needs no reference.
            reply_to = None;
        }
        let event = IncomingEvent {
            platform: PLATFORM.into(),
            tenant: tenant(guild, msg.author.id),
            channel: channel.get().to_string(),
            thread: thread.map(|t| t.get().to_string()),
            message_id: msg.id.get().to_string(),
            kind: EventKind::Posted,
            author,
            text,
            attachments: msg
                .attachments
                .iter()
                .map(|a| attachment(a, &self.downloads))
                .collect(),
            addressing,
            permalink: Some(permalink(guild, msg.channel_id, msg.id)),
            timestamp: msg.timestamp.to_rfc3339(),
        };
        let sink: Arc<dyn ReplySink> = Arc::new(ChannelSink::new(
            ctx.http.clone(),
            reply_channel,
            reply_to,
            self.history(&ctx.http, channel, guild),
        ));
        if addressed {
            // Typing shows before the answer starts; a failure only costs the indicator.
            if let Err(e) = ctx.http.broadcast_typing(reply_channel).await {
                tracing::debug!(channel = %reply_channel, error = %e, "typing indicator refused");
            }
        }
        let handled = self.core.submit(event, sink);
        if addressed {
            // Discord shows typing for about 10 s; renew it until the core is done.
            let http = ctx.http.clone();
            tokio::spawn(async move {
                tokio::pin!(handled);
                loop {
                    tokio::select! {
                        _ = &mut handled => return,
                        () = tokio::time::sleep(TYPING_RENEWAL) => {
                            let _ = http.broadcast_typing(reply_channel).await;
                        }
                    }
                }
            });
        }
    }

    async fn message_update(
        &self,
        ctx: Context,
        _old: Option<Message>,
        _new: Option<Message>,
        update: MessageUpdateEvent,
    ) {
        // Only a changed text is an edit (Discord also sends updates for link previews).
        let (Some(content), Some(user)) = (update.content.as_ref(), update.author.as_ref()) else {
            return;
        };
        if user.bot {
            return;
        }
        let guild = update.guild_id;
        let (conversation, thread) = self.conversation_channel(update.channel_id);
        let (text, _) = strip_mention(content, self.bot.get().copied());
        let nick = update
            .member
            .as_ref()
            .and_then(|m| m.as_ref())
            .and_then(|m| m.nick.clone());
        let event = IncomingEvent {
            platform: PLATFORM.into(),
            tenant: tenant(guild, user.id),
            channel: conversation.get().to_string(),
            thread: thread.map(|t| t.get().to_string()),
            message_id: update.id.get().to_string(),
            kind: EventKind::Edited,
            author: Author {
                id: user.id.get().to_string(),
                name: nick
                    .or_else(|| user.global_name.clone())
                    .unwrap_or_else(|| user.name.clone()),
                ..Default::default()
            },
            text,
            attachments: update
                .attachments
                .iter()
                .flatten()
                .map(|a| attachment(a, &self.downloads))
                .collect(),
            addressing: Addressing::default(),
            permalink: Some(permalink(guild, update.channel_id, update.id)),
            timestamp: update.timestamp.and_then(|t| t.to_rfc3339()),
        };
        let sink = Arc::new(ChannelSink::new(
            ctx.http.clone(),
            update.channel_id,
            None,
            self.history(&ctx.http, update.channel_id, guild),
        ));
        let _ = self.core.submit(event, sink);
    }

    async fn message_delete(
        &self,
        ctx: Context,
        channel: ChannelId,
        message: MessageId,
        guild: Option<GuildId>,
    ) {
        // A DM deletion names no user, so its tenant is unknown; DMs hold no knowledge posts.
        let Some(guild) = guild else {
            return;
        };
        let (conversation, thread) = self.conversation_channel(channel);
        let event = IncomingEvent {
            platform: PLATFORM.into(),
            tenant: guild.get().to_string(),
            channel: conversation.get().to_string(),
            thread: thread.map(|t| t.get().to_string()),
            message_id: message.get().to_string(),
            kind: EventKind::Deleted,
            permalink: Some(permalink(Some(guild), channel, message)),
            ..Default::default()
        };
        let sink = Arc::new(ChannelSink::new(
            ctx.http.clone(),
            channel,
            None,
            self.history(&ctx.http, channel, Some(guild)),
        ));
        let _ = self.core.submit(event, sink);
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(command) => self.slash_command(&ctx, command).await,
            other => tracing::debug!(kind = ?other.kind(), "discord: interaction ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
