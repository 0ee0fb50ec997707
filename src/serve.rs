//! `lore serve`: opens the core once and runs every configured surface (Discord, Telegram,
//! the HTTP API) over it until SIGTERM or Ctrl-C, then shuts down within a bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use lore_core::bot::Engine;
use lore_core::kb::KnowledgeBase;
use lore_core::llm::Secrets;

use crate::http::HttpParts;
use crate::settings::Settings;

/// How long running surfaces get to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Options of `lore serve` given on the command line.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--discord-shards START-END/TOTAL`: overrides `[discord] shards`.
    pub discord_shards: Option<String>,
}

/// What every surface gets: the core, the secrets and the shutdown signal.
pub struct ServeContext {
    pub settings: Settings,
    pub kb: Arc<KnowledgeBase>,
    pub engine: Engine,
    pub secrets: Secrets,
    pub options: ServeOptions,
    /// Cancelled when lore is asked to stop; surfaces stop taking work and return.
    pub shutdown: CancellationToken,
}

/// A running surface: its name, and a future that ends when it stops.
pub type Surface = (
    &'static str,
    Pin<Box<dyn Future<Output = Result<()>> + Send>>,
);

/// The surfaces that are configured (a token in the environment, a listen address set).
fn configured_surfaces(ctx: &Arc<ServeContext>) -> Result<Vec<Surface>> {
    let mut surfaces: Vec<Surface> = Vec::new();
    surfaces.extend(discord_surface(ctx)?);
    if ctx.settings.http.listen.is_some() {
        let parts = HttpParts {
            kb: ctx.kb.clone(),
            core: ctx.engine.core().clone(),
            shutdown: ctx.shutdown.clone(),
        };
        let ctx = ctx.clone();
        surfaces.push((
            "http",
            Box::pin(async move {
                crate::http::serve(parts, ctx.settings.http.clone(), &ctx.secrets).await
            }),
        ));
    }
    surfaces.extend(telegram_surface(ctx));
    Ok(surfaces)
}

/// Discord, when `DISCORD_TOKEN` is set; its shards come from `--discord-shards`, else from
/// `[discord] shards`.
fn discord_surface(ctx: &Arc<ServeContext>) -> Result<Option<Surface>> {
    let Some(token) = ctx.secrets.get("DISCORD_TOKEN") else {
        return Ok(None);
    };
    let settings = ctx.settings.discord.clone();
    let shards = match &ctx.options.discord_shards {
        Some(flag) => Some(
            flag.parse::<lore_discord::ShardRange>()
                .map_err(|e| anyhow::anyhow!("--discord-shards: {e}"))?,
        ),
        None => settings.shard_range()?,
    };
    let handler: Arc<dyn lore_chat::ChatHandler> = Arc::new(ctx.engine.clone());
    let shutdown = ctx.shutdown.clone();
    let token = token.expose().to_owned();
    let running = async move {
        let stop = async move { shutdown.cancelled().await };
        lore_discord::run(settings, token, handler, shards, stop).await?;
        Ok::<(), anyhow::Error>(())
    };
    Ok(Some(("discord", Box::pin(running))))
}

/// Telegram, when `TELEGRAM_BOT_TOKEN` is set in the environment or `.env` (never logged).
fn telegram_surface(ctx: &Arc<ServeContext>) -> Option<Surface> {
    let token = ctx
        .secrets
        .get("TELEGRAM_BOT_TOKEN")
        .map(|s| s.expose().to_owned())
        .filter(|t| !t.trim().is_empty())?;
    let settings = ctx.settings.telegram.clone();
    let handler: Arc<dyn lore_chat::ChatHandler> = Arc::new(ctx.engine.clone());
    let shutdown = ctx.shutdown.clone().cancelled_owned();
    Some((
        "telegram",
        Box::pin(async move {
            lore_telegram::run(settings, token, handler, shutdown)
                .await
                .map_err(anyhow::Error::from)
        }),
    ))
}

/// Runs until a signal, or until a surface fails.
pub async fn run(settings: Settings, options: ServeOptions) -> Result<()> {
    // Listen for stop signals before anything slow starts: from here on a SIGTERM or
    // Ctrl-C during start-up ends lore cleanly instead of killing it unflushed.
    let shutdown = CancellationToken::new();
    cancel_on_stop_signal(shutdown.clone())?;
    tracing::debug!("stop signals handled; opening the knowledge base");
    let secrets = Secrets::from_env()?;
    let kb = Arc::new(KnowledgeBase::open(settings.knowledge()).await?);
    let engine = Engine::open(kb.clone(), settings.bot.clone())?;
    if shutdown.is_cancelled() {
        tracing::info!("stopped during start-up");
        return close(&kb, &engine).await;
    }
    let ctx = Arc::new(ServeContext {
        settings,
        kb: kb.clone(),
        engine: engine.clone(),
        secrets,
        options,
        shutdown,
    });
    let surfaces = configured_surfaces(&ctx)?;
    if surfaces.is_empty() {
        bail!(
            "nothing to serve: set DISCORD_TOKEN or TELEGRAM_BOT_TOKEN in the environment, \
             or [http] listen in the settings"
        );
    }
    let mut running = JoinSet::new();
    for (name, surface) in surfaces {
        tracing::info!(surface = name, "starting");
        running.spawn(async move { (name, surface.await) });
    }
    let mut failure = None;
    tokio::select! {
        () = ctx.shutdown.cancelled() => {}
        Some(ended) = running.join_next() => {
            let (name, result) = ended.context("a surface panicked")?;
            match result {
                Ok(()) => tracing::warn!(surface = name, "stopped on its own, shutting down"),
                Err(e) => failure = Some(e.context(format!("{name} failed"))),
            }
        }
    }
    ctx.shutdown.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(ended) = running.join_next().await {
            if let Ok((name, Err(e))) = ended {
                tracing::warn!(surface = name, error = %e, "stopped with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            seconds = SHUTDOWN_GRACE.as_secs(),
            "surfaces did not stop in time; abandoning them"
        );
        running.abort_all();
    }
    close(&kb, &engine).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Flushes the conversation memory and the store.
async fn close(kb: &KnowledgeBase, engine: &Engine) -> Result<()> {
    engine.shutdown().await?;
    kb.store.commit().await?;
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C. The handlers are registered before this returns
/// (registering replaces the default action, which would end the process at once).
fn cancel_on_stop_signal(token: CancellationToken) -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("stop signal received, shutting down");
            token.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop signal received, shutting down");
        token.cancel();
    });
    Ok(())
}
