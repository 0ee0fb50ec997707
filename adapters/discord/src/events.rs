//! Gateway events → `lore_chat` events: messages (posted, edited, deleted), slash commands,
//! and READY (command registration, intent check).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use lore_chat::{
    ChannelHistory, ChatHandler, EventKind, Handled, InFlight, IncomingEvent, ReplySink,
    SlashCommand,
};
use serenity::all::{
    ApplicationFlags, ChannelId, Command, CommandInteraction, Context, EventHandler, GuildId, Http,
    Interaction, Message, MessageId, MessageUpdateEvent, Ready, UserId,
};

use crate::DiscordSettings;
use crate::commands;
use crate::roles::Roles;
use crate::sink::{ChannelSink, History, InteractionSink, MessageMapper};
use crate::threads::Threads;
use crate::translate::{self, Place};

/// How often the typing indicator is renewed while an answer is in the making.
const TYPING_RENEWAL: Duration = Duration::from_secs(8);
/// Longest an attachment download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// The serenity event handler: translates, submits to the core, and shows typing meanwhile.
pub struct Handler {
    settings: DiscordSettings,
    core: Arc<dyn ChatHandler>,
    command_guild: Option<GuildId>,
    bot: Arc<OnceLock<UserId>>,
    commands_registered: AtomicBool,
    roles: Roles,
    downloads: reqwest::Client,
    /// Guild messages seen with no text at all (a sign the Message Content intent is off).
    empty_messages: AtomicUsize,
    threads: Threads,
    /// Events the core is still handling; shutdown waits for them.
    inflight: InFlight,
}

impl Handler {
    pub fn new(
        settings: DiscordSettings,
        core: Arc<dyn ChatHandler>,
        command_guild: Option<GuildId>,
        inflight: InFlight,
    ) -> Self {
        Self {
            settings,
            core,
            command_guild,
            bot: Arc::default(),
            commands_registered: AtomicBool::new(false),
            roles: Roles::default(),
            // A stalled CDN must not hold the channel's queue forever.
            downloads: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(DOWNLOAD_TIMEOUT)
                .build()
                .unwrap_or_default(),
            empty_messages: AtomicUsize::new(0),
            threads: Threads::default(),
            inflight,
        }
    }

    /// Hands an event to the core and counts it as under way until the core is done;
    /// `meanwhile` runs until then (typing, completing a slash command).
    fn submit<F>(
        &self,
        event: IncomingEvent,
        sink: Arc<dyn ReplySink>,
        meanwhile: impl FnOnce(Handled) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let guard = self.inflight.enter();
        let work = meanwhile(self.core.submit(event, sink));
        tokio::spawn(async move {
            work.await;
            drop(guard);
        });
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
            translate::past_message(m, guild, bot.get().copied(), &downloads)
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
            .roles
            .author(&ctx.http, user, nick, guild, roles, permissions)
            .await;
        let (args, files) = commands::arguments(&command.data.options);
        let place = Place {
            guild,
            user: Some(user.id),
            channel: command.channel_id,
            thread: None,
        };
        let mut event = translate::event(
            EventKind::Posted,
            place,
            format!("interaction-{}", command.id.get()),
        );
        event.author = author;
        event.text = args.clone();
        event.attachments = files
            .iter()
            .filter_map(|id| command.data.resolved.attachments.get(id))
            .map(|a| translate::attachment(a, &self.downloads))
            .collect();
        event.addressing.direct = guild.is_none();
        event.addressing.command = Some(SlashCommand {
            name: command.data.name.clone(),
            args,
        });
        let sink = Arc::new(InteractionSink {
            http: ctx.http.clone(),
            interaction: command.clone(),
            sent: AtomicUsize::new(0),
            history: self.history(&ctx.http, command.channel_id, guild),
        });
        let completing = sink.clone();
        self.submit(event, sink, |handled| async move {
            let _ = handled.await;
            // A deferred response left empty would spin "thinking…" until Discord gives up.
            if completing.sent.load(Ordering::Relaxed) == 0 {
                let _ = completing.send("✓").await.map_err(|e| {
                    tracing::warn!(error = %e, "could not complete a slash command");
                });
            }
        });
    }

    /// A sink replying in `channel`, with the history of the conversation's channel.
    fn channel_sink(
        &self,
        http: &Arc<Http>,
        channel: ChannelId,
        reply_to: Option<MessageId>,
        history_of: ChannelId,
        guild: Option<GuildId>,
    ) -> Arc<dyn ReplySink> {
        Arc::new(ChannelSink::new(
            http.clone(),
            channel,
            reply_to,
            self.history(http, history_of, guild),
        ))
    }
}

/// Waits for the core without showing anything.
async fn quietly(handled: Handled) {
    let _ = handled.await;
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
        let guild = msg.guild_id;
        if guild.is_some()
            && msg.content.is_empty()
            && msg.attachments.is_empty()
            && msg.embeds.is_empty()
            && msg.sticker_items.is_empty()
            && self.empty_messages.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!(channel = %msg.channel_id, "discord: a guild message arrived without text; is the Message Content intent enabled for this bot?");
        }
        let (channel, thread) = self.threads.conversation(msg.channel_id);
        let place = Place {
            guild,
            user: Some(msg.author.id),
            channel,
            thread,
        };
        let mut event = translate::posted(&msg, place, self.bot.get().copied(), &self.downloads);
        let addressed = event.addressing.is_addressed();
        if addressed {
            let (nick, roles) = match &msg.member {
                Some(m) => (m.nick.as_deref(), m.roles.as_slice()),
                None => (None, &[][..]),
            };
            event.author = self
                .roles
                .author(&ctx.http, &msg.author, nick, guild, roles, None)
                .await;
        }
        let (mut reply_channel, mut reply_to) = (msg.channel_id, addressed.then_some(msg.id));
        if addressed
            && guild.is_some()
            && thread.is_none()
            && self.settings.answer_in_thread
            && let Some(opened) = self.threads.open(&ctx.http, &msg, &event.text).await
        {
            event.thread = Some(opened.get().to_string());
            reply_channel = opened;
            // The thread starts from the question, so the answer needs no reference.
            reply_to = None;
        }
        let sink = self.channel_sink(&ctx.http, reply_channel, reply_to, channel, guild);
        if !addressed {
            self.submit(event, sink, quietly);
            return;
        }
        // Typing shows before the answer starts; a failure only costs the indicator.
        if let Err(e) = ctx.http.broadcast_typing(reply_channel).await {
            tracing::debug!(channel = %reply_channel, error = %e, "typing indicator refused");
        }
        // Discord shows typing for about 10 s; renew it until the core is done.
        let http = ctx.http.clone();
        self.submit(event, sink, |handled| async move {
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
        let (channel, thread) = self.threads.conversation(update.channel_id);
        let place = Place {
            guild,
            user: Some(user.id),
            channel,
            thread,
        };
        let nick = update
            .member
            .as_ref()
            .and_then(|m| m.as_ref())
            .and_then(|m| m.nick.as_deref());
        let mut event = translate::event(EventKind::Edited, place, update.id.get().to_string());
        event.author = translate::author(user, nick);
        event.text = translate::strip_mention(content, self.bot.get().copied()).0;
        event.attachments = update
            .attachments
            .iter()
            .flatten()
            .map(|a| translate::attachment(a, &self.downloads))
            .collect();
        event.permalink = Some(translate::permalink(guild, update.channel_id, update.id));
        event.timestamp = update.timestamp.and_then(|t| t.to_rfc3339());
        let sink = self.channel_sink(&ctx.http, update.channel_id, None, update.channel_id, guild);
        self.submit(event, sink, quietly);
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
        let (conversation, thread) = self.threads.conversation(channel);
        let place = Place {
            guild: Some(guild),
            user: None,
            channel: conversation,
            thread,
        };
        let mut event = translate::event(EventKind::Deleted, place, message.get().to_string());
        event.permalink = Some(translate::permalink(Some(guild), channel, message));
        let sink = self.channel_sink(&ctx.http, channel, None, channel, Some(guild));
        self.submit(event, sink, quietly);
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(command) => self.slash_command(&ctx, command).await,
            other => tracing::debug!(kind = ?other.kind(), "discord: interaction ignored"),
        }
    }
}
