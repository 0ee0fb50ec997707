//! `lore eval`: score retrieval and answers against a validation set, every configuration
//! in a store of its own, and write a report folder per run (issue 8).

pub mod answers;
pub mod chart;
pub mod dataset;
#[cfg(test)]
mod fake_llm;
pub mod generate;
pub mod judge;
pub mod metrics;
pub mod report;
pub mod retrieval;
pub mod settings;
pub mod sweep;

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::config::Settings;
use crate::retrieve::SearchMode;

/// Why an evaluation could not run; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {reason}")]
    Dataset { path: PathBuf, reason: String },
    #[error("{path}: not a results.json of lore eval: {err}")]
    Results {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("chart {path}: {reason}")]
    Chart { path: PathBuf, reason: String },
    #[error("evaluation store: {0}")]
    App(#[from] crate::app::AppError),
    #[error("evaluation store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("ingesting {name}: {reason}")]
    Ingest { name: String, reason: String },
    #[error(transparent)]
    Retrieve(#[from] crate::retrieve::RetrieveError),
    #[error("judge model: {0}")]
    Llm(#[from] crate::llm::LlmError),
    #[error("{0}")]
    Usage(String),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |err| EvalError::Io { path, err }
    }
}

/// `lore eval ...`.
#[derive(Debug, clap::Args)]
pub struct EvalCommand {
    #[command(subcommand)]
    pub action: EvalAction,
}

/// The evaluation commands.
#[derive(Debug, clap::Subcommand)]
pub enum EvalAction {
    /// Recall@k, MRR and nDCG@10 of one configuration, in a fresh store (or --store).
    Retrieval(RetrievalArgs),
    /// Answer metrics (EM, F1, BLEU, faithfulness, the judge) plus retrieval, on a fresh store.
    Answers(RetrievalArgs),
    /// A grid over chunk size, overlap, embedder, search mode and k; a fresh store per index.
    Sweep(SweepArgs),
    /// An LLM writes question/answer/source triples from the documents (JSONL for --qa).
    Generate(generate::GenerateArgs),
    /// Two runs side by side, with the cases that changed.
    Compare {
        /// Run folder (or its results.json).
        a: PathBuf,
        /// Run folder (or its results.json).
        b: PathBuf,
    },
}

/// What to evaluate against and where the report goes.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Validation set: SQuAD JSON, JSONL {query, answer?, source?, page?}, or the tutorial's
    /// [{query, answer, page_num}] list.
    #[arg(long, value_name = "FILE")]
    pub qa: PathBuf,
    /// Files or directories to index, for sets that do not carry their passages.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub corpus: Vec<String>,
    /// Number the set gives the first page (the tutorial's PyMuPDF pages start at 0).
    #[arg(long, default_value_t = 1)]
    pub page_base: u32,
    /// Evaluate only the first N questions.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Report folder.
    #[arg(long, value_name = "DIR", default_value = "eval-out")]
    pub out: PathBuf,
}

/// `lore eval retrieval`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetrievalArgs {
    #[command(flatten)]
    pub set: SetArgs,
    /// Cut-offs for recall@k.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10")]
    pub k: Vec<usize>,
    /// Search mode (default: retrieval.mode).
    #[arg(long, value_enum)]
    pub mode: Option<SearchMode>,
    /// Query this existing store (its --tenant) instead of building a fresh one.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Chunk size of the fresh store (default: ingest.chunk_size).
    #[arg(long)]
    pub chunk_size: Option<usize>,
    /// Chunk overlap of the fresh store (default: ingest.chunk_overlap).
    #[arg(long)]
    pub chunk_overlap: Option<usize>,
    /// Dense embedder of the fresh store, an `embedding.provider` (default: the configured one).
    #[arg(long)]
    pub embedder: Option<String>,
}

/// `lore eval sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub set: SetArgs,
    #[arg(long, value_delimiter = ',', default_value = "200,300,500")]
    pub chunk_sizes: Vec<usize>,
    /// Overlaps as a percentage of the chunk size.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub overlaps: Vec<usize>,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sparse,dense,hybrid"
    )]
    pub modes: Vec<SearchMode>,
    /// Dense embedders (`embedding.provider` values: none, local, or a vendor).
    #[arg(long, value_delimiter = ',', default_value = "local")]
    pub embedders: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10")]
    pub k: Vec<usize>,
    /// Keep each cell's store under OUT/stores/ instead of a temporary directory.
    #[arg(long)]
    pub keep_stores: bool,
}

/// Runs one `lore eval` command; `tenant` is the one `--store` is queried in.
pub async fn run(command: EvalCommand, settings: Settings, tenant: &str) -> anyhow::Result<()> {
    let progress = std::io::stderr().is_terminal();
    match command.action {
        EvalAction::Retrieval(args) => {
            let result = retrieval::run(&settings, &args, tenant, progress).await?;
            report::write_run(&args.set.out, &result)?;
            print!("{}", report::summary_markdown(&result));
            println!("report: {}", args.set.out.join("report.md").display());
        }
        EvalAction::Answers(args) => {
            let result = answers::run(&settings, &args, tenant, progress).await?;
            report::write_run(&args.set.out, &result)?;
            print!("{}", report::summary_markdown(&result));
            println!("report: {}", args.set.out.join("report.md").display());
        }
        EvalAction::Sweep(args) => {
            let sweep = sweep::run(&settings, &args, progress).await?;
            print!("{}", sweep::table_markdown(&sweep));
            println!("report: {}", args.set.out.join("report.md").display());
        }
        EvalAction::Generate(args) => {
            let s = generate::run(&settings, &args).await?;
            println!(
                "{} pages: {} cases written to {}; rejected: {} unparseable items, {} unparseable replies, {} with a quote not in the page",
                s.pages,
                s.generated,
                args.out.display(),
                s.unparseable_items,
                s.unparseable_replies,
                s.unsupported
            );
        }
        EvalAction::Compare { a, b } => {
            let (a, b) = (report::read_run(&a)?, report::read_run(&b)?);
            print!("{}", report::compare_markdown(&a, &b));
        }
    }
    Ok(())
}

/// A progress bar on stderr, hidden when it is not a terminal.
pub(crate) fn progress_bar(enabled: bool, len: usize, what: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {what} {{elapsed}} {{wide_msg}}");
    bar.set_style(indicatif::ProgressStyle::with_template(&template).expect("valid template"));
    bar
}
