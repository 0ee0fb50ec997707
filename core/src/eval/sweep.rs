//! `lore eval sweep`: a grid over chunking, embedder, search mode and k. Every index
//! configuration (chunk size, overlap, embedder) is built in a store of its own, so no
//! number measures a mixture of chunkings; search modes and k only change the query.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::results::{IndexConfig, RunConfig, RunResult};
use super::{EvalError, SweepArgs, chart, report, retrieval};
use crate::kb::KnowledgeBaseSettings;
use crate::progress::Progress;
use crate::retrieve::{RetrievalSettings, SearchMode};

/// All cells of a sweep, in grid order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sweep {
    pub ks: Vec<usize>,
    pub cells: Vec<RunResult>,
    /// Where each index lived (distinct per index configuration).
    pub stores: Vec<String>,
    /// Grid points not run, with the reason.
    pub skipped: Vec<String>,
}

/// The query settings a mode is run with: fusion and dense weight vary only for hybrid,
/// the instruction cut only where BM25 reads the question; an empty list keeps the
/// configured value.
fn query_grid(
    args: &SweepArgs,
    base: &RetrievalSettings,
    mode: SearchMode,
) -> Vec<RetrievalSettings> {
    let hybrid = mode == SearchMode::Hybrid;
    let fusions = if hybrid {
        or_base(&args.fusions, base.fusion)
    } else {
        vec![base.fusion]
    };
    let weights = if hybrid {
        or_base(&args.dense_weights, base.dense_weight)
    } else {
        vec![base.dense_weight]
    };
    let cuts = if mode == SearchMode::Dense {
        vec![base.cut_instructions]
    } else {
        or_base(&args.cut_instructions, base.cut_instructions)
    };
    let reference_weights = if mode == SearchMode::Dense {
        vec![base.reference_weight]
    } else {
        or_base(&args.reference_weights, base.reference_weight)
    };
    let mut grid = Vec::new();
    for &fusion in &fusions {
        for &dense_weight in &weights {
            for &cut_instructions in &cuts {
                for &reference_weight in &reference_weights {
                    grid.push(RetrievalSettings {
                        fusion,
                        dense_weight,
                        cut_instructions,
                        reference_weight,
                        ..base.clone()
                    });
                }
            }
        }
    }
    grid
}

/// The values to try, or the configured one when none is given.
fn or_base<T: Clone>(list: &[T], base: T) -> Vec<T> {
    if list.is_empty() {
        vec![base]
    } else {
        list.to_vec()
    }
}

/// Runs the grid and writes OUT/report.md, OUT/sweep.json, OUT/recall.svg and a run folder
/// per cell under OUT/cells/.
pub async fn run(
    settings: &KnowledgeBaseSettings,
    args: &SweepArgs,
    progress: &dyn Progress,
) -> Result<Sweep, EvalError> {
    let set = retrieval::load_set(&args.set.qa, args.set.page_base, args.set.limit)?;
    let out = &args.set.out;
    std::fs::create_dir_all(out).map_err(EvalError::io(out))?;
    let mut sweep = Sweep {
        ks: args.k.clone(),
        cells: Vec::new(),
        stores: Vec::new(),
        skipped: Vec::new(),
    };
    for embedder in &args.embedders {
        for &size in &args.chunk_sizes {
            for &overlap_pct in &args.overlaps {
                let config = IndexConfig {
                    chunk_size: size,
                    chunk_overlap: size * overlap_pct / 100,
                    embedder: embedder.as_str().to_owned(),
                };
                let name = format!(
                    "{}-{}-{}",
                    config.chunk_size,
                    config.chunk_overlap,
                    embedder.as_str()
                );
                let at = args.keep_stores.then(|| out.join("stores").join(&name));
                progress.note(&format!("index {name}"));
                let index = retrieval::build_index(
                    settings,
                    &set,
                    &args.set.corpus,
                    &config,
                    at.as_deref(),
                    progress,
                )
                .await?;
                sweep.stores.push(index.dir.display().to_string());
                let mut seen_modes = Vec::new();
                for &mode in &args.modes {
                    let effective = index.kb.retriever.effective_mode(Some(mode));
                    if effective != mode || seen_modes.contains(&effective) {
                        sweep.skipped.push(format!(
                            "{name} {mode:?}: no dense embedder, it would repeat {effective:?}"
                        ));
                        continue;
                    }
                    seen_modes.push(effective);
                    for knobs in query_grid(args, index.kb.retriever.settings(), mode) {
                        let retriever = index.kb.retriever.with_settings(knobs);
                        let (cases, seconds) =
                            retrieval::evaluate(&index, &retriever, &set, mode, &args.k, progress)
                                .await?;
                        let run_config = retrieval::run_config(
                            &index,
                            &retriever,
                            &args.set,
                            config.clone(),
                            mode,
                            &args.k,
                            seconds,
                        );
                        let result = retrieval::score(run_config, cases);
                        let cell_dir = out
                            .join("cells")
                            .join(result.config.label.replace(['/', ' '], "-"));
                        report::write_run(&cell_dir, &result)?;
                        progress.note(&row(&result, &args.k));
                        sweep.cells.push(result);
                    }
                }
            }
        }
    }
    let json = serde_json::to_string_pretty(&sweep).expect("sweep serialises");
    report::write(&out.join("sweep.json"), &json)?;
    report::write(&out.join("report.md"), &table_markdown(&sweep))?;
    let series: Vec<_> = sweep.cells.iter().map(report::recall_series).collect();
    chart::recall_chart(&out.join("recall.svg"), &series)?;
    Ok(sweep)
}

fn row(r: &RunResult, ks: &[usize]) -> String {
    let c = &r.config;
    let recalls: Vec<String> = ks
        .iter()
        .map(|k| format!("{:.3}", r.recall_at(*k).unwrap_or(0.0)))
        .collect();
    format!(
        "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {} | {:.0} |",
        c.embedder_id.as_deref().unwrap_or("none"),
        c.index.chunk_size,
        c.index.chunk_overlap,
        search_label(c),
        recalls.join(" | "),
        r.mrr,
        r.ndcg10,
        c.chunks,
        c.ingest_seconds,
    )
}

fn mode_name(mode: SearchMode) -> String {
    format!("{mode:?}").to_lowercase()
}

/// The mode with the query-time knobs a sweep varies, where they apply, so cells that
/// differ only in them tell apart: "hybrid standardised-0.5", "sparse whole-question".
fn search_label(c: &RunConfig) -> String {
    let mut label = mode_name(c.effective_mode);
    if let Some(q) = &c.query {
        if c.effective_mode == SearchMode::Hybrid {
            let _ = write!(label, " {}-{}", q.fusion, q.dense_weight);
        }
        if !q.cut_instructions && c.effective_mode != SearchMode::Dense {
            label.push_str(" whole-question");
        }
        if let (Some(w), false) = (q.reference_weight, c.effective_mode == SearchMode::Dense) {
            let _ = write!(label, " ref×{w}");
        }
    }
    label
}

/// The full table, then recall@5 (or the largest k below it) by chunk size × mode, as the
/// tutorial's recall-by-chunk-size table reads.
pub fn table_markdown(sweep: &Sweep) -> String {
    let mut ks = sweep.ks.clone();
    ks.sort_unstable();
    let mut md = String::from("# Retrieval sweep\n\n");
    let header: Vec<String> = ks.iter().map(|k| format!("R@{k}")).collect();
    let _ = writeln!(
        md,
        "| embedder | chunk | overlap | search | {} | MRR | nDCG@10 | chunks | ingest s |",
        header.join(" | ")
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|{}---|---|---|---|",
        "---|".repeat(ks.len())
    );
    for cell in &sweep.cells {
        let _ = writeln!(md, "{}", row(cell, &ks));
    }
    let pivot_k = ks
        .iter()
        .copied()
        .filter(|k| *k <= 5)
        .max()
        .unwrap_or(ks[0]);
    let mut modes: Vec<String> = Vec::new();
    let mut indexes: Vec<(String, usize, usize)> = Vec::new();
    for c in &sweep.cells {
        let m = search_label(&c.config);
        if !modes.contains(&m) {
            modes.push(m);
        }
        let key = (
            c.config.embedder_id.clone().unwrap_or("none".into()),
            c.config.index.chunk_size,
            c.config.index.chunk_overlap,
        );
        if !indexes.contains(&key) {
            indexes.push(key);
        }
    }
    let _ = writeln!(md, "\n## recall@{pivot_k} by chunking and search\n");
    let _ = writeln!(md, "| embedder | chunk | overlap | {} |", modes.join(" | "));
    let _ = writeln!(md, "|---|---|---|{}", "---|".repeat(modes.len()));
    for (embedder, size, overlap) in &indexes {
        let values: Vec<String> = modes
            .iter()
            .map(|m| {
                sweep
                    .cells
                    .iter()
                    .find(|c| {
                        c.config.embedder_id.as_deref().unwrap_or("none") == embedder
                            && c.config.index.chunk_size == *size
                            && c.config.index.chunk_overlap == *overlap
                            && search_label(&c.config) == *m
                    })
                    .and_then(|c| c.recall_at(pivot_k))
                    .map_or("–".into(), |v| format!("{v:.3}"))
            })
            .collect();
        let _ = writeln!(
            md,
            "| {embedder} | {size} | {overlap} | {} |",
            values.join(" | ")
        );
    }
    for s in &sweep.skipped {
        let _ = writeln!(md, "\nskipped: {s}");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: &str, fusion: &str, weight: f32, cut: bool) -> RunConfig {
        serde_json::from_value(serde_json::json!({
            "label": "x", "qa": "qa.json", "corpus": [], "store": null,
            "index": {"chunk_size": 150, "chunk_overlap": 15, "embedder": "local"},
            "embedder_id": "e5", "mode": mode, "effective_mode": mode, "ks": [5],
            "chunks": 1, "ingest_seconds": 0.0, "search_seconds": 0.0,
            "query": {"fusion": fusion, "dense_weight": weight, "cut_instructions": cut},
        }))
        .expect("a run config")
    }

    #[test]
    fn cells_that_differ_in_query_knobs_are_labelled_apart() {
        assert_eq!(
            search_label(&config("hybrid", "standardised", 0.5, true)),
            "hybrid standardised-0.5"
        );
        assert_eq!(
            search_label(&config("hybrid", "rrf", 0.7, false)),
            "hybrid rrf-0.7 whole-question"
        );
        let mut weighted = config("sparse", "rrf", 0.7, true);
        weighted.query.as_mut().unwrap().reference_weight = Some(5.0);
        assert_eq!(search_label(&weighted), "sparse ref×5");
        // Fusion and weight mean nothing to one side alone.
        assert_eq!(search_label(&config("sparse", "rrf", 0.7, true)), "sparse");
        assert_eq!(search_label(&config("dense", "rrf", 0.7, false)), "dense");
    }
}
