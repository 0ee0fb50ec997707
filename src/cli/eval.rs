//! `lore eval ...`: the command-line shape of the core's evaluation runs, and their output.

use std::path::PathBuf;

use anyhow::Result;
use lore_core::embed::EmbeddingProvider;
use lore_core::eval::{self, answers, attribution, generate, report, retrieval, scope, sweep};
use lore_core::retrieve::{Fusion, SearchMode};

use crate::progress::TerminalProgress;
use crate::settings::Settings;

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
    Generate(GenerateArgs),
    /// Answered rates of questions the knowledge base can and cannot answer.
    Scope(ScopeArgs),
    /// Attribution's support threshold: reference answers against their gold passage and
    /// against another case's passage.
    Attribution(AttributionArgs),
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

/// `lore eval retrieval` and `lore eval answers`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetrievalArgs {
    #[command(flatten)]
    pub set: SetArgs,
    /// Cut-offs for recall@k.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10")]
    pub k: Vec<usize>,
    /// Search mode: hybrid, dense, sparse or mmr (default: retrieval.mode).
    #[arg(long)]
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
    pub embedder: Option<EmbeddingProvider>,
    /// Print results.json as one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
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
    #[arg(long, value_delimiter = ',', default_value = "sparse,dense,hybrid")]
    pub modes: Vec<SearchMode>,
    /// Dense embedders (`embedding.provider` values: none, local, or a vendor).
    #[arg(long, value_delimiter = ',', default_value = "local")]
    pub embedders: Vec<EmbeddingProvider>,
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10")]
    pub k: Vec<usize>,
    /// Keep each cell's store under OUT/stores/ instead of a temporary directory.
    #[arg(long)]
    pub keep_stores: bool,
    /// Hybrid fusion rules to compare: standardised, rrf (default: retrieval.fusion).
    #[arg(long, value_delimiter = ',')]
    pub fusions: Vec<Fusion>,
    /// Dense weights of the hybrid fusion to compare (default: retrieval.dense_weight).
    #[arg(long, value_delimiter = ',')]
    pub dense_weights: Vec<f32>,
    /// Whether BM25 reads the question without its instruction phrases: true, false
    /// (default: retrieval.cut_instructions).
    #[arg(long, value_delimiter = ',')]
    pub cut_instructions: Vec<bool>,
    /// Weights of a numbered reference's word (式(13.6)) in BM25 to compare
    /// (default: retrieval.reference_weight).
    #[arg(long, value_delimiter = ',')]
    pub reference_weights: Vec<f32>,
}

/// `lore eval scope`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScopeArgs {
    /// JSONL, one {"question": ..., "in_scope": true|false} per line.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "tests/fixtures/scope_questions.jsonl"
    )]
    pub questions: PathBuf,
    /// Files or directories to index into a fresh store.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub corpus: Vec<String>,
    /// Ask this existing store (its --tenant) instead of building a fresh one.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print the result as one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// `lore eval attribution`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttributionArgs {
    /// Validation set with reference answers (the formats of --qa above).
    #[arg(long, value_name = "FILE")]
    pub qa: PathBuf,
    /// The documents holding a page-based set's gold pages.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// Number the set gives the first page (the tutorial's PyMuPDF pages start at 0).
    #[arg(long, default_value_t = 1)]
    pub page_base: u32,
    /// Only the first N questions.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `lore eval generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Files or directories to write questions about.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    pub corpus: Vec<PathBuf>,
    /// Questions asked of the model per page or section.
    #[arg(long, default_value_t = 2)]
    pub per_page: usize,
    /// Pages or sections used at most (the first ones).
    #[arg(long)]
    pub max_pages: Option<usize>,
    /// JSONL file to write, in the format `lore eval retrieval --qa` reads.
    #[arg(long, value_name = "FILE", default_value = "qa.jsonl")]
    pub out: PathBuf,
}

impl From<SetArgs> for eval::SetArgs {
    fn from(a: SetArgs) -> Self {
        eval::SetArgs {
            qa: a.qa,
            corpus: a.corpus,
            page_base: a.page_base,
            limit: a.limit,
            out: a.out,
        }
    }
}

impl From<RetrievalArgs> for eval::RetrievalArgs {
    fn from(a: RetrievalArgs) -> Self {
        eval::RetrievalArgs {
            set: a.set.into(),
            k: a.k,
            mode: a.mode,
            store: a.store,
            chunk_size: a.chunk_size,
            chunk_overlap: a.chunk_overlap,
            embedder: a.embedder,
        }
    }
}

impl From<SweepArgs> for eval::SweepArgs {
    fn from(a: SweepArgs) -> Self {
        eval::SweepArgs {
            set: a.set.into(),
            chunk_sizes: a.chunk_sizes,
            overlaps: a.overlaps,
            modes: a.modes,
            embedders: a.embedders,
            k: a.k,
            keep_stores: a.keep_stores,
            fusions: a.fusions,
            dense_weights: a.dense_weights,
            cut_instructions: a.cut_instructions,
            reference_weights: a.reference_weights,
        }
    }
}

impl From<GenerateArgs> for generate::GenerateArgs {
    fn from(a: GenerateArgs) -> Self {
        generate::GenerateArgs {
            corpus: a.corpus,
            per_page: a.per_page,
            max_pages: a.max_pages,
            out: a.out,
        }
    }
}

/// Runs one `lore eval` command; `tenant` is the one `--store` is queried in.
pub async fn run(command: EvalCommand, settings: Settings, tenant: &str) -> Result<()> {
    let knowledge = settings.knowledge();
    match command.action {
        EvalAction::Retrieval(args) => {
            let json = args.json;
            let progress = TerminalProgress::on_stderr(!json);
            let args = eval::RetrievalArgs::from(args);
            let result = retrieval::run(&knowledge, &args, tenant, progress.as_ref()).await?;
            print_run(&args.set.out, &result, json)?;
        }
        EvalAction::Answers(args) => {
            let json = args.json;
            let progress = TerminalProgress::on_stderr(!json);
            let args = eval::RetrievalArgs::from(args);
            let result = answers::run(
                &knowledge,
                &settings.eval.judge,
                &args,
                tenant,
                progress.as_ref(),
            )
            .await?;
            print_run(&args.set.out, &result, json)?;
        }
        EvalAction::Sweep(args) => {
            let args = eval::SweepArgs::from(args);
            let progress = TerminalProgress::on_stderr(true);
            let sweep = sweep::run(&knowledge, &args, progress.as_ref()).await?;
            print!("{}", sweep::table_markdown(&sweep));
            println!("report: {}", args.set.out.join("report.md").display());
        }
        EvalAction::Generate(args) => {
            let args = generate::GenerateArgs::from(args);
            let s = generate::run(&settings.llm, &args).await?;
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
        EvalAction::Scope(args) => {
            let progress = TerminalProgress::on_stderr(!args.json);
            let run = scope::ScopeArgs {
                questions: args.questions,
                corpus: args.corpus,
                store: args.store,
            };
            let result = scope::run(&knowledge, &run, tenant, progress.as_ref()).await?;
            if args.json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                print!("{}", scope::summary_markdown(&result));
            }
        }
        EvalAction::Attribution(args) => {
            let run = attribution::AttributionArgs {
                qa: args.qa,
                corpus: args.corpus,
                page_base: args.page_base,
                limit: args.limit,
            };
            let result = attribution::run(&run).await?;
            if args.json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                print!("{}", attribution::summary_markdown(&result));
            }
        }
        EvalAction::Compare { a, b } => {
            let (a, b) = (report::read_run(&a)?, report::read_run(&b)?);
            print!("{}", report::compare_markdown(&a, &b));
        }
    }
    Ok(())
}

/// Writes the run folder, then prints its summary (or results.json as one JSON object).
fn print_run(out: &std::path::Path, result: &eval::results::RunResult, json: bool) -> Result<()> {
    report::write_run(out, result)?;
    if json {
        println!("{}", serde_json::to_string(result)?);
    } else {
        print!("{}", report::summary_markdown(result));
        println!("report: {}", out.join("report.md").display());
    }
    Ok(())
}
