//! The `lore` command line: argument parsing and printing. Work happens in the core.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lore_chat::{ChatHandler, ReplySink};
use lore_core::answer;
use lore_core::bot::Engine;
use lore_core::bot::settings::BotSettings;
use lore_core::embed::build_embedder;
use lore_core::kb::KnowledgeBase;
use lore_core::retrieve::{RankUnit, Retrieval, SearchMode};
use lore_core::store::{StoreBackend, TenantScope, open_store};
use serde_json::json;

use crate::progress::TerminalProgress;
use crate::settings::Settings;
use crate::terminal::{self, TerminalSink};

mod busy;
pub mod eval;

/// lore: a team knowledge-base assistant.
#[derive(Debug, Parser)]
#[command(name = "lore", version, about)]
pub struct Cli {
    /// Extra settings file, layered over the built-in settings.toml defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the knowledge base lives (overrides store.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Knowledge-base tenant: every read and write is limited to it.
    #[arg(long, global = true, env = "LORE_TENANT", default_value = "global")]
    pub tenant: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add files, directories (recursively) or http(s) URLs to the knowledge base.
    Ingest {
        #[arg(required = true, value_name = "PATH_OR_URL")]
        inputs: Vec<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search the knowledge base.
    Search {
        /// The query (omit with --batch).
        #[arg(required_unless_present = "batch")]
        query: Option<String>,
        /// Results per query.
        #[arg(short, long)]
        k: Option<usize>,
        /// hybrid, dense, sparse or mmr (default: retrieval.mode).
        #[arg(long)]
        mode: Option<SearchMode>,
        /// One JSON object per result line.
        #[arg(long)]
        json: bool,
        /// Answer every line of FILE (or - for stdin) as a query, in one process.
        #[arg(long, value_name = "FILE", conflicts_with = "query")]
        batch: Option<String>,
        /// Rank raw chunks (several may come from one page) instead of one hit per section.
        #[arg(long)]
        chunks: bool,
    },
    /// Answer a question from the knowledge base, with numbered sources.
    Ask {
        question: String,
        #[arg(long)]
        json: bool,
    },
    /// Interactive chat over the knowledge base (reads lines from stdin when piped).
    Chat {
        /// Resume (or name) a stored conversation; its memory survives restarts.
        #[arg(long, value_name = "ID")]
        conversation: Option<String>,
    },
    /// Run every configured chat adapter and the HTTP API until SIGTERM.
    Serve {
        /// Run only these Discord shards, START-END/TOTAL (e.g. 0-3/8); overrides
        /// `[discord] shards`.
        #[arg(long, value_name = "RANGE")]
        discord_shards: Option<String>,
    },
    /// List the sources in the knowledge base.
    Sources {
        #[arg(long)]
        json: bool,
    },
    /// Delete every chunk of one source.
    Forget { source: String },
    /// Sources, chunks and bytes on disk.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Measure ingest throughput and search latency (fresh stores in a temporary dir).
    Bench {
        /// Corpus to ingest (default: the sample knowledge base beside the checkout, when present).
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Synthetic chunks for the latency-at-scale run (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        synthetic: usize,
        /// Keep the synthetic store in DIR and reuse it on the next run, so latency can be
        /// re-measured on a quiet machine without rebuilding it.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Score retrieval (and answers) against a validation set; fresh stores per configuration.
    // Boxed: its arguments are far larger than any other command's.
    Eval(Box<eval::EvalCommand>),
    /// Copy the whole knowledge base (every tenant) from one store backend to the other,
    /// e.g. `--from embedded --to qdrant`. Resumes after an interruption; verifies counts.
    Migrate {
        /// embedded or qdrant.
        #[arg(long)]
        from: StoreBackend,
        /// embedded or qdrant.
        #[arg(long)]
        to: StoreBackend,
        /// Chunks per page.
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// Check that settings files load (built-in defaults, then FILE, then LORE_* environment,
    /// as every command loads them); prints OK or the error naming the key, per file.
    CheckConfig {
        /// Files to check one by one; none checks --config (or the defaults alone).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Runs one command. A data dir held by another lore process is refused with what to do
/// instead: stop it, or the same request to its HTTP API.
pub async fn run(cli: Cli) -> Result<()> {
    let hint = busy::Hint::for_command(&cli.command);
    run_command(cli).await.map_err(|e| hint.explain(e))
}

async fn run_command(cli: Cli) -> Result<()> {
    // Before the settings are loaded below: checking them must not depend on them loading.
    if let Command::CheckConfig { files } = &cli.command {
        return check_config(cli.config.as_deref(), files);
    }
    let mut settings = Settings::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(dir) = cli.data_dir {
        settings.store.data_dir = dir;
    }
    if let Command::Bench {
        corpus,
        synthetic,
        keep,
    } = cli.command
    {
        return crate::bench::run(&settings, synthetic, corpus, keep).await;
    }
    if let Command::Serve { discord_shards } = cli.command {
        let options = crate::serve::ServeOptions { discord_shards };
        return crate::serve::run(settings, options).await;
    }
    if let Command::Eval(eval) = cli.command {
        return eval::run(*eval, settings, &cli.tenant).await;
    }
    if let Command::Migrate { from, to, batch } = cli.command {
        return migrate(&settings, from, to, batch).await;
    }
    let bot_settings = settings.bot.clone();
    let app = KnowledgeBase::open(settings.knowledge()).await?;
    let scope = TenantScope::only(&cli.tenant);
    match cli.command {
        Command::Ingest { inputs, json } => ingest(&app, &inputs, &cli.tenant, json).await,
        Command::Search {
            query,
            k,
            mode,
            json,
            batch,
            chunks,
        } => {
            let k = k.unwrap_or(app.settings.retrieval.top_k);
            let unit = if chunks {
                RankUnit::Chunk
            } else {
                app.settings.retrieval.rank_by
            };
            let search = SearchArgs { k, mode, unit };
            match batch {
                Some(file) => search_batch(&app, &scope, &file, search, json).await,
                None => {
                    let query = query.expect("clap requires a query without --batch");
                    let retrieval = search.run(&app, &scope, &query).await?;
                    print_hits(&retrieval, app.assistant.links(), None, json)
                }
            }
        }
        Command::Ask { question, json } => {
            if json {
                let answer = app.assistant.answer(&scope, &question, &[], None).await?;
                println!("{}", serde_json::to_string(&answer)?);
            } else {
                let answer = answer_streaming(&app, &scope, &question, &[]).await?;
                println!("{}", sources_block(&answer));
            }
            Ok(())
        }
        Command::Chat { conversation, .. } => {
            chat(app, bot_settings, &cli.tenant, conversation).await
        }
        Command::Sources { json } => {
            let sources = app.store.sources(&scope).await?;
            for s in &sources {
                if json {
                    let shown =
                        json!({"source": answer::display_name(&s.source), "chunks": s.chunks});
                    println!("{shown}");
                } else {
                    println!(
                        "{:>6} chunks  {}",
                        s.chunks,
                        answer::display_name(&s.source)
                    );
                }
            }
            if !json && sources.is_empty() {
                println!("no sources in tenant {}", cli.tenant);
            }
            Ok(())
        }
        Command::Forget { source } => {
            // The name shown may be the shortened one of a source an older lore stored.
            let stored = answer::resolve_source(app.store.as_ref(), &cli.tenant, &source).await?;
            let removed = app
                .store
                .delete_source(&cli.tenant, stored.as_deref().unwrap_or(&source))
                .await?;
            app.store.commit().await?;
            if removed == 0 {
                anyhow::bail!("no source named {source:?} in tenant {}", cli.tenant);
            }
            println!("forgot {source}: {removed} chunks removed");
            Ok(())
        }
        Command::Stats { json } => {
            let stats = app.store.stats().await?;
            let sources = app.store.sources(&scope).await?;
            let tenant_chunks: usize = sources.iter().map(|s| s.chunks).sum();
            let dense = app.embedder.as_ref().map(|e| e.id().to_owned());
            if json {
                let mut out = json!({
                    "tenant": cli.tenant,
                    "sources": sources.len(),
                    "chunks": tenant_chunks,
                    "total_chunks": stats.chunks,
                    "indexed_vectors": stats.indexed_vectors,
                    "segments": stats.segments,
                    "bytes_on_disk": stats.bytes_on_disk,
                    "dense_embedder": dense,
                });
                // A server backend: shards, replicas and their states.
                if let Some(cluster) = &stats.cluster {
                    out["cluster"] = json!(cluster);
                }
                println!("{out}");
            } else {
                println!("tenant          {}", cli.tenant);
                println!("sources         {}", sources.len());
                println!(
                    "chunks          {tenant_chunks} (all tenants: {})",
                    stats.chunks
                );
                println!("bytes on disk   {}", stats.bytes_on_disk);
                println!(
                    "dense embedder  {}",
                    dense.as_deref().unwrap_or("none (sparse-only)")
                );
                if let Some(cluster) = &stats.cluster {
                    let replicas: usize = cluster.shards.iter().map(|s| s.replicas.len()).sum();
                    let active = cluster
                        .shards
                        .iter()
                        .flat_map(|s| &s.replicas)
                        .filter(|r| r.state == "Active")
                        .count();
                    println!(
                        "cluster         {} shards, replication factor {}, {replicas} replicas \
                         ({active} active) on {} peers",
                        cluster.shards.len(),
                        cluster.replication_factor,
                        cluster.peers
                    );
                }
            }
            Ok(())
        }
        Command::Bench { .. }
        | Command::Eval(_)
        | Command::Serve { .. }
        | Command::Migrate { .. }
        | Command::CheckConfig { .. } => {
            unreachable!("handled before the store is opened")
        }
    }
}

/// `lore migrate`: both stores are opened with the configured embedder, so its vectors
/// (and the embedded store's manifest) must match on both sides.
async fn migrate(
    settings: &Settings,
    from: StoreBackend,
    to: StoreBackend,
    batch: usize,
) -> Result<()> {
    use lore_core::store::migrate::{MigrateOptions, migrate};
    if from == to {
        anyhow::bail!("--from and --to name the same backend; nothing to copy");
    }
    let knowledge_dir = settings.knowledge_dir();
    let is_empty_dir = |dir: &std::path::Path| {
        std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
    };
    if from == StoreBackend::Embedded && is_empty_dir(&knowledge_dir) {
        anyhow::bail!(
            "no embedded knowledge base at {} (set --data-dir or store.data_dir)",
            knowledge_dir.display()
        );
    }
    let secrets = lore_core::llm::Secrets::from_env()?;
    let embedder = build_embedder(&settings.embedding, &secrets)?;
    let dense = embedder
        .as_ref()
        .map(|e| (e.id().to_owned(), e.dimension()));
    let describe = |backend: StoreBackend| match backend {
        StoreBackend::Embedded => format!("embedded {}", knowledge_dir.display()),
        StoreBackend::Qdrant => format!(
            "qdrant {}/{}",
            settings.store.url, settings.store.collection
        ),
    };
    let source = open_store(&settings.store, from, dense.clone())
        .await
        .with_context(|| format!("opening the source ({})", describe(from)))?;
    let target = open_store(&settings.store, to, dense)
        .await
        .with_context(|| format!("opening the target ({})", describe(to)))?;
    let options = MigrateOptions {
        route: format!("{} -> {}", describe(from), describe(to)),
        checkpoint: settings.store.data_dir.join("migrate-checkpoint.json"),
        batch: batch.max(1),
    };
    let progress = TerminalProgress::on_stderr(true);
    let report = migrate(
        source.as_ref(),
        target.as_ref(),
        &options,
        progress.as_ref(),
    )
    .await?;
    if let Some(before) = report.resumed_after {
        println!("resumed an interrupted migration after {before} chunks");
    }
    println!("migrated {} chunks: {}", report.copied, options.route);
    for (tenant, chunks) in &report.tenants {
        println!("verified tenant {tenant}: {chunks} chunks in both stores");
    }
    Ok(())
}

async fn ingest(app: &KnowledgeBase, inputs: &[String], tenant: &str, json: bool) -> Result<()> {
    let progress = TerminalProgress::on_stderr(!json);
    let report = app
        .ingestor
        .ingest(inputs, tenant, progress.as_ref())
        .await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for name in &report.unsupported {
            println!("skipped {name}: unsupported file type");
        }
        for (source, error) in &report.errors {
            println!("error   {source}: {error}");
        }
        println!(
            "ingested {} files ({} pages, {} chunks); {} unchanged, {} unsupported, {} errors; {:.1} s ({:.1} s embedding)",
            report.files,
            report.pages,
            report.chunks,
            report.unchanged,
            report.unsupported.len(),
            report.errors.len(),
            report.seconds,
            report.embed_seconds,
        );
    }
    Ok(())
}

/// How `lore search` ranks: the same for one query and for a batch.
#[derive(Clone, Copy)]
struct SearchArgs {
    k: usize,
    mode: Option<SearchMode>,
    unit: RankUnit,
}

impl SearchArgs {
    async fn run(self, app: &KnowledgeBase, scope: &TenantScope, query: &str) -> Result<Retrieval> {
        Ok(app
            .retriever
            .search_by(scope, query, self.mode, self.k, self.unit)
            .await?)
    }
}

async fn search_batch(
    app: &KnowledgeBase,
    scope: &TenantScope,
    file: &str,
    search: SearchArgs,
    json: bool,
) -> Result<()> {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening batch file {file}"))?,
        ))
    };
    for (line_no, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading batch file {file}"))?;
        let query = line.trim();
        if query.is_empty() {
            continue;
        }
        let retrieval = search.run(app, scope, query).await?;
        if !json {
            println!("# {line_no}: {query}");
        }
        print_hits(&retrieval, app.assistant.links(), Some(line_no), json)?;
    }
    Ok(())
}

fn print_hits(
    retrieval: &Retrieval,
    links: &answer::SourceLinks,
    query: Option<usize>,
    json: bool,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, hit) in retrieval.hits.iter().enumerate() {
        let c = &hit.chunk;
        let citation = answer::Citation::of(i + 1, c, links);
        if json {
            let mut line = json!({
                "rank": i + 1,
                "score": hit.score,
                "source": citation.source,
                "title": citation.title,
                "url": citation.url,
                "page": c.page,
                "heading": c.heading,
                "timestamp": c.timestamp,
                "text": c.text,
            });
            if let Some(q) = query {
                line["query"] = json!(q);
            }
            writeln!(out, "{line}")?;
        } else {
            let preview: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
            let preview: String = preview.chars().take(200).collect();
            writeln!(
                out,
                "{}. [{:.4}] {}\n   {preview}",
                i + 1,
                hit.score,
                citation.label()
            )?;
        }
    }
    if !json && retrieval.hits.is_empty() {
        writeln!(out, "no results")?;
    }
    Ok(())
}

/// `lore check-config`: loads each file exactly as `--config FILE` would, with the process
/// environment on top, and reports every file rather than stopping at the first bad one.
fn check_config(config: Option<&std::path::Path>, files: &[PathBuf]) -> Result<()> {
    let files: Vec<Option<&std::path::Path>> = if files.is_empty() {
        vec![config]
    } else {
        files.iter().map(|f| Some(f.as_path())).collect()
    };
    let mut failed = 0;
    for file in &files {
        let name = file.map_or_else(
            || "built-in defaults".to_owned(),
            |f| f.display().to_string(),
        );
        match Settings::load(*file, std::env::vars()) {
            Ok(_) => println!("{name}: OK"),
            Err(e) => {
                failed += 1;
                println!("{name}: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} settings files did not load", files.len());
    }
    Ok(())
}

/// Prints the answer as it streams; returns it for the sources list.
async fn answer_streaming(
    app: &KnowledgeBase,
    scope: &TenantScope,
    question: &str,
    history: &[answer::HistoryTurn],
) -> Result<answer::Answer> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        while let Some(piece) = rx.recv().await {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
    });
    let result = app
        .assistant
        .answer(scope, question, history, Some(tx))
        .await;
    printer.await.ok();
    Ok(result?)
}

/// The numbered sources under an answer that has already been printed.
fn sources_block(answer: &answer::Answer) -> String {
    let rendered = answer.render();
    let tail = &rendered[answer.text.trim_end().len()..];
    tail.to_owned()
}

/// Terminal chat on the bot engine: one stored conversation, so `--conversation ID`
/// resumes it after a restart. Lines starting with `/` are bot commands (`/reset`, ...).
async fn chat(
    app: KnowledgeBase,
    bot: BotSettings,
    tenant: &str,
    conversation: Option<String>,
) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let conversation =
        conversation.unwrap_or_else(|| format!("chat-{}", lore_core::bot::memory::unix_now()));
    let engine = Engine::open(Arc::new(app), bot)?.without_rate_limits();
    if interactive {
        println!(
            "lore chat: ask about tenant {tenant:?}. Conversation {conversation:?} (resume with \
             --conversation {conversation}). /reset forgets it, /help lists commands, /exit leaves."
        );
    }
    let sink: Arc<dyn ReplySink> = Arc::new(TerminalSink);
    let stdin = std::io::stdin();
    for seq in 0.. {
        if interactive {
            print!("> ");
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            text => {
                let event = terminal::event(tenant, &conversation, seq, text);
                // Wait for each reply so the next prompt follows it.
                let _ = engine.submit(event, sink.clone()).await;
            }
        }
    }
    engine.shutdown().await?;
    Ok(())
}
