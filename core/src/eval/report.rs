//! Run folders: results.json, report.md and charts; reading them back for `compare`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::EvalError;
use super::chart;
use super::retrieval::RunResult;

/// Misses listed in report.md before "and N more".
const MISSES_SHOWN: usize = 50;

/// Writes `results.json`, `report.md` and `recall.svg` into `dir` (created if needed).
pub fn write_run(dir: &Path, result: &RunResult) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    let json = serde_json::to_string_pretty(result).expect("results serialise");
    write(&dir.join("results.json"), &json)?;
    let mut md = summary_markdown(result);
    md.push_str(&misses_markdown(result));
    write(&dir.join("report.md"), &md)?;
    if let Some(answers) = &result.answers {
        let dims = super::answers::distributions(answers);
        if !dims.is_empty() {
            chart::distribution_chart(&dir.join("scores.svg"), &dims)?;
        }
    }
    chart::recall_chart(&dir.join("recall.svg"), &[recall_series(result)])
}

/// Writes `text` to `path`, naming the file on failure.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), EvalError> {
    std::fs::write(path, text).map_err(EvalError::io(path))
}

/// Recall@k of one run as a chart line.
pub fn recall_series(result: &RunResult) -> chart::Series {
    let mut ks = result.config.ks.clone();
    ks.sort_unstable();
    let points = ks
        .iter()
        .filter_map(|k| result.recall_at(*k).map(|r| (*k as f64, r)))
        .collect();
    (result.config.label.clone(), points)
}

/// Reads a run folder's results.json (or the file itself).
pub fn read_run(path: &Path) -> Result<RunResult, EvalError> {
    let file: PathBuf = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file).map_err(EvalError::io(&file))?;
    serde_json::from_str(&text).map_err(|err| EvalError::Results { path: file, err })
}

/// The summary table of one run.
pub fn summary_markdown(r: &RunResult) -> String {
    let c = &r.config;
    let mut ks = c.ks.clone();
    ks.sort_unstable();
    let mut md = String::new();
    let _ = writeln!(md, "# Retrieval evaluation: {}\n", c.label);
    let _ = writeln!(
        md,
        "set `{}`, {} questions; store {}; chunk size {}, overlap {}; embedder {}; mode {:?}{}; {} chunks; ingest {:.1} s, search {:.1} s\n",
        c.qa,
        r.cases.len(),
        c.store.as_deref().unwrap_or("fresh (temporary)"),
        c.index.chunk_size,
        c.index.chunk_overlap,
        c.embedder_id.as_deref().unwrap_or("none (sparse-only)"),
        c.effective_mode,
        if c.effective_mode != c.mode {
            format!(" (asked for {:?}, no dense embedder)", c.mode)
        } else {
            String::new()
        },
        c.chunks,
        c.ingest_seconds,
        c.search_seconds,
    );
    let header: Vec<String> = ks.iter().map(|k| format!("recall@{k}")).collect();
    let _ = writeln!(md, "| level | {} | MRR | nDCG@10 |", header.join(" | "));
    let _ = writeln!(md, "|---|{}---|---|", "---|".repeat(ks.len()));
    let row = |name: &str, recall: &dyn Fn(usize) -> Option<f64>, mrr: f64, ndcg: f64| {
        let values: Vec<String> = ks
            .iter()
            .map(|k| format!("{:.3}", recall(*k).unwrap_or(0.0)))
            .collect();
        format!(
            "| {name} | {} | {mrr:.3} | {ndcg:.3} |\n",
            values.join(" | ")
        )
    };
    md.push_str(&row("sections", &|k| r.recall_at(k), r.mrr, r.ndcg10));
    if let Some(c) = &r.chunk_level {
        md.push_str(&row("chunks", &|k| c.recall_at(k), c.mrr, c.ndcg10));
    }
    md.push('\n');
    if let Some(a) = &r.answers {
        md.push_str(&answers_markdown(a));
    }
    md
}

fn answers_markdown(a: &super::results::AnswerReport) -> String {
    let show = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    let mut md = format!(
        "## Answers ({} by {}, judged by {})\n\n",
        a.cases.len(),
        a.model.as_deref().unwrap_or("the extractive answerer"),
        a.judge_model.as_deref().unwrap_or("nobody"),
    );
    md.push_str("| EM | F1 | BLEU | choice | faithfulness | dangling [n] | judge failures | answer failures |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
        show(a.exact_match),
        show(a.f1),
        show(a.bleu),
        show(a.choice),
        show(a.faithfulness),
        a.dangling_citations,
        a.judge_failures,
        a.answer_failures,
    );
    if !a.judge.is_empty() {
        let names: Vec<&str> = a.judge.keys().map(String::as_str).collect();
        let values: Vec<String> = a.judge.values().map(|v| format!("{v:.3}")).collect();
        let _ = writeln!(
            md,
            "| {} |\n|{}\n| {} |\n",
            names.join(" | "),
            "---|".repeat(names.len()),
            values.join(" | ")
        );
    }
    md
}

fn misses_markdown(r: &RunResult) -> String {
    let k = r.config.ks.iter().copied().max().unwrap_or(10);
    let misses: Vec<_> = r
        .cases
        .iter()
        .filter(|c| c.rank.is_none_or(|rank| rank > k))
        .collect();
    let mut md = format!("## Misses at k = {k} ({})\n\n", misses.len());
    for case in misses.iter().take(MISSES_SHOWN) {
        let _ = writeln!(
            md,
            "- `{}` {} — gold {}; got {}",
            case.id,
            case.query,
            case.gold,
            case.retrieved
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if misses.len() > MISSES_SHOWN {
        let _ = writeln!(
            md,
            "- … and {} more (results.json)",
            misses.len() - MISSES_SHOWN
        );
    }
    md
}

/// Two runs side by side, then the cases whose rank changed.
pub fn compare_markdown(a: &RunResult, b: &RunResult) -> String {
    let mut md = format!(
        "| metric | A: {} | B: {} | B − A |\n|---|---|---|---|\n",
        a.config.label, b.config.label
    );
    let mut ks: Vec<usize> = a.config.ks.iter().chain(&b.config.ks).copied().collect();
    ks.sort_unstable();
    ks.dedup();
    let mut row = |name: String, x: Option<f64>, y: Option<f64>| {
        let show = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
        let delta = match (x, y) {
            (Some(x), Some(y)) => format!("{:+.3}", y - x),
            _ => "–".into(),
        };
        let _ = writeln!(md, "| {name} | {} | {} | {delta} |", show(x), show(y));
    };
    for k in ks {
        row(format!("recall@{k}"), a.recall_at(k), b.recall_at(k));
    }
    row("MRR".into(), Some(a.mrr), Some(b.mrr));
    row("nDCG@10".into(), Some(a.ndcg10), Some(b.ndcg10));
    let by_id: std::collections::HashMap<&str, _> =
        a.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let changed: Vec<_> = b
        .cases
        .iter()
        .filter_map(|cb| by_id.get(cb.id.as_str()).map(|ca| (*ca, cb)))
        .filter(|(ca, cb)| ca.rank != cb.rank)
        .collect();
    let rank = |r: Option<usize>| r.map_or("miss".to_string(), |r| r.to_string());
    let _ = writeln!(md, "\n## Cases whose rank changed ({})\n", changed.len());
    for (ca, cb) in changed {
        let arrow = match (ca.rank, cb.rank) {
            (Some(x), Some(y)) if y < x => "better",
            (None, Some(_)) => "better",
            _ => "worse",
        };
        let _ = writeln!(
            md,
            "- `{}` {}: {} → {} ({arrow})",
            cb.id,
            cb.query,
            rank(ca.rank),
            rank(cb.rank)
        );
    }
    md
}
