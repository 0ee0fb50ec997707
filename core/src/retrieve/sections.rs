//! Sections as the unit of ranking. Chunks do the matching; a section (a PDF page, a
//! Markdown section, a run of subtitle cues: what chunks never cross) is ranked by its best
//! chunk on each side, and the two sides are fused per section.

use std::collections::HashMap;

use crate::store::{Chunk, Hit};

/// What identifies a section: the metadata every chunk cut from it carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SectionKey {
    tenant: String,
    source: String,
    page: Option<u32>,
    heading: Option<String>,
    timestamp: Option<String>,
}

impl SectionKey {
    pub fn of(chunk: &Chunk) -> Self {
        Self {
            tenant: chunk.tenant.clone(),
            source: chunk.source.clone(),
            page: chunk.page,
            heading: chunk.heading.clone(),
            timestamp: chunk.timestamp.clone(),
        }
    }
}

/// One section's evidence on one side: its best chunk and score, and every matching chunk.
#[derive(Debug, Clone)]
pub struct SectionHit {
    pub key: SectionKey,
    /// The best-scoring chunk of the section on this side.
    pub best: Hit,
    /// Every candidate chunk of the section, best first.
    pub chunks: Vec<Hit>,
}

/// Groups hits (best first) by section, keeping the order of each section's best chunk:
/// a section scores as its best chunk.
pub fn collapse(hits: Vec<Hit>) -> Vec<SectionHit> {
    let mut order: Vec<SectionHit> = Vec::new();
    let mut at: HashMap<SectionKey, usize> = HashMap::new();
    for hit in hits {
        let key = SectionKey::of(&hit.chunk);
        match at.get(&key) {
            Some(&i) => order[i].chunks.push(hit),
            None => {
                at.insert(key.clone(), order.len());
                order.push(SectionHit {
                    key,
                    best: hit.clone(),
                    chunks: vec![hit],
                });
            }
        }
    }
    order
}

/// Fuses two ranked section lists by standardised scores: each side's scores become
/// z-scores over the sections it returned (a section it did not return gets that side's
/// lowest), and a section's fused score is `dense_weight · z_dense + (1 − dense_weight) ·
/// z_sparse`. Unlike rank fusion this keeps how far ahead a side's leader is, so a weak
/// list (all scores alike) moves little and a confident one moves much.
pub fn fuse_standardised(
    dense: Vec<SectionHit>,
    sparse: Vec<SectionHit>,
    dense_weight: f32,
) -> Vec<SectionHit> {
    let zd = standardise(&dense);
    let zs = standardise(&sparse);
    let floor = |z: &[f32]| z.iter().copied().fold(f32::INFINITY, f32::min);
    let (low_d, low_s) = (floor(&zd), floor(&zs));
    let mut fused: Vec<(SectionHit, f32, f32)> = Vec::new();
    let mut at: HashMap<SectionKey, usize> = HashMap::new();
    for (section, z) in dense.into_iter().zip(zd) {
        at.insert(section.key.clone(), fused.len());
        fused.push((section, z, low_s));
    }
    for (section, z) in sparse.into_iter().zip(zs) {
        match at.get(&section.key) {
            Some(&i) => {
                fused[i].2 = z;
                merge_chunks(&mut fused[i].0, section.chunks);
            }
            None => fused.push((section, low_d, z)),
        }
    }
    let mut out: Vec<SectionHit> = fused
        .into_iter()
        .map(|(mut section, d, s)| {
            let d = if d.is_finite() { d } else { 0.0 };
            let s = if s.is_finite() { s } else { 0.0 };
            section.best.score = dense_weight * d + (1.0 - dense_weight) * s;
            section
        })
        .collect();
    out.sort_by(|a, b| b.best.score.total_cmp(&a.best.score));
    out
}

/// Fuses two ranked section lists with weighted reciprocal rank fusion.
pub fn fuse_rrf(
    dense: Vec<SectionHit>,
    sparse: Vec<SectionHit>,
    dense_weight: f32,
    k: u32,
) -> Vec<SectionHit> {
    let rrf = |rank: usize| 1.0 / (k as f32 + rank as f32 + 1.0);
    let mut fused: Vec<SectionHit> = Vec::new();
    let mut at: HashMap<SectionKey, usize> = HashMap::new();
    for (rank, mut section) in dense.into_iter().enumerate() {
        section.best.score = dense_weight * rrf(rank);
        at.insert(section.key.clone(), fused.len());
        fused.push(section);
    }
    for (rank, section) in sparse.into_iter().enumerate() {
        let add = (1.0 - dense_weight) * rrf(rank);
        match at.get(&section.key) {
            Some(&i) => {
                fused[i].best.score += add;
                merge_chunks(&mut fused[i], section.chunks);
            }
            None => {
                let mut section = section;
                section.best.score = add;
                fused.push(section);
            }
        }
    }
    fused.sort_by(|a, b| b.best.score.total_cmp(&a.best.score));
    fused
}

/// Adds the other side's chunks of a section, without repeating a chunk.
fn merge_chunks(section: &mut SectionHit, more: Vec<Hit>) {
    for hit in more {
        if !section
            .chunks
            .iter()
            .any(|h| h.chunk.index == hit.chunk.index)
        {
            section.chunks.push(hit);
        }
    }
}

/// z-scores of the sections' scores; all zero when the scores do not vary.
fn standardise(sections: &[SectionHit]) -> Vec<f32> {
    let n = sections.len() as f32;
    if sections.is_empty() {
        return Vec::new();
    }
    let mean = sections.iter().map(|s| s.best.score).sum::<f32>() / n;
    let var = sections
        .iter()
        .map(|s| (s.best.score - mean).powi(2))
        .sum::<f32>()
        / n;
    let sd = var.sqrt();
    sections
        .iter()
        .map(|s| {
            if sd > f32::EPSILON {
                (s.best.score - mean) / sd
            } else {
                0.0
            }
        })
        .collect()
}

/// The section's matching chunks joined in reading order, overlapping chunks merged by their
/// offsets, gaps marked with "…": the passage an answer reads, so a match comes with the
/// text around it that also matched. At most `max_chars` characters.
pub fn passage(section: &SectionHit, max_chars: usize) -> String {
    let mut chunks: Vec<&Chunk> = section.chunks.iter().map(|h| &h.chunk).collect();
    chunks.sort_by_key(|c| c.start);
    let mut out = String::new();
    let mut end = 0usize;
    for (i, chunk) in chunks.iter().enumerate() {
        let text = if i > 0 && chunk.start < end && chunk.end > end {
            // Overlapping the previous chunk: keep only the new tail.
            let skip = end - chunk.start;
            chunk.text.get(skip..).unwrap_or(&chunk.text)
        } else if i > 0 && chunk.end <= end {
            continue;
        } else {
            if i > 0 {
                out.push_str(if chunk.start == end { "" } else { " … " });
            }
            chunk.text.as_str()
        };
        if out.chars().count() + text.chars().count() > max_chars && !out.is_empty() {
            break;
        }
        out.push_str(text);
        end = end.max(chunk.end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(source: &str, page: u32, index: u32, score: f32) -> Hit {
        Hit {
            score,
            chunk: Chunk {
                tenant: "t".into(),
                source: source.into(),
                index,
                text: format!("{source}/{page}/{index}"),
                page: Some(page),
                heading: None,
                timestamp: None,
                title: None,
                start: 0,
                end: 0,
                source_hash: String::new(),
            },
            dense: None,
            sparse: None,
        }
    }

    fn pages(sections: &[SectionHit]) -> Vec<u32> {
        sections.iter().map(|s| s.key.page.unwrap()).collect()
    }

    #[test]
    fn a_section_appears_once_ranked_by_its_best_chunk() {
        let hits = vec![
            hit("book", 7, 1, 0.9),
            hit("book", 7, 2, 0.8),
            hit("book", 3, 9, 0.7),
            hit("book", 7, 3, 0.6),
            hit("other", 7, 0, 0.5),
        ];
        let sections = collapse(hits);
        assert_eq!(pages(&sections), vec![7, 3, 7]);
        assert_eq!(sections[0].chunks.len(), 3);
        assert_eq!(sections[0].best.chunk.index, 1);
        assert_eq!(sections[2].key.source, "other");
    }

    #[test]
    fn a_confident_side_outweighs_a_flat_one() {
        // Dense is nearly flat; sparse has one clear leader (page 9), low on dense.
        let dense = collapse(vec![
            hit("b", 1, 0, 0.81),
            hit("b", 2, 0, 0.80),
            hit("b", 9, 0, 0.80),
            hit("b", 4, 0, 0.79),
        ]);
        let sparse = collapse(vec![
            hit("b", 9, 1, 12.0),
            hit("b", 1, 1, 2.0),
            hit("b", 4, 1, 1.9),
            hit("b", 2, 1, 1.8),
        ]);
        let fused = fuse_standardised(dense.clone(), sparse.clone(), 0.5);
        assert_eq!(pages(&fused)[0], 9);
        // Rank fusion cannot see the margin: the dense leader, second on sparse, wins.
        assert_eq!(pages(&fuse_rrf(dense, sparse, 0.5, 60))[0], 1);
    }

    #[test]
    fn fusion_keeps_both_sides_chunks_of_a_section() {
        let dense = collapse(vec![hit("b", 1, 0, 0.9)]);
        let sparse = collapse(vec![hit("b", 1, 4, 3.0), hit("b", 1, 0, 2.0)]);
        let fused = fuse_standardised(dense, sparse, 0.5);
        let indices: Vec<u32> = fused[0].chunks.iter().map(|h| h.chunk.index).collect();
        assert_eq!(indices, vec![0, 4]);
    }

    #[test]
    fn a_passage_joins_neighbours_and_marks_gaps() {
        let mut a = hit("b", 1, 0, 0.9);
        a.chunk.text = "abcdef".into();
        (a.chunk.start, a.chunk.end) = (0, 6);
        let mut b = hit("b", 1, 1, 0.8);
        b.chunk.text = "efghij".into();
        (b.chunk.start, b.chunk.end) = (4, 10);
        let mut c = hit("b", 1, 3, 0.7);
        c.chunk.text = "xyz".into();
        (c.chunk.start, c.chunk.end) = (20, 23);
        let section = collapse(vec![c, a, b]).remove(0);
        assert_eq!(passage(&section, 100), "abcdefghij … xyz");
        assert_eq!(passage(&section, 8), "abcdef");
    }

    fn retrieval(hits: Vec<Hit>, evidence: bool) -> crate::retrieve::Retrieval {
        crate::retrieve::Retrieval {
            passages: hits.iter().map(|h| h.chunk.text.clone()).collect(),
            hits,
            mode: crate::retrieve::SearchMode::Sparse,
            evidence,
            best_dense: None,
            best_coverage: if evidence { 1.0 } else { 0.0 },
        }
    }

    #[test]
    fn fused_wordings_each_keep_their_best_hits() {
        // The rewrite and the user's words share generic pages; only the user's words
        // find page 40. Rank-sum fusion would rank the shared pages first and drop it.
        let rewrite = retrieval((1..=5).map(|p| hit("book", p, p, 1.0)).collect(), true);
        let own = vec![hit("plan", 40, 0, 1.0)]
            .into_iter()
            .chain((1..=4).map(|p| hit("book", p, p + 10, 0.5)))
            .collect();
        let fused = crate::retrieve::Retrieval::fuse(vec![rewrite, retrieval(own, true)], 3);
        let got: Vec<u32> = fused.hits.iter().map(|h| h.chunk.page.unwrap()).collect();
        assert_eq!(got, vec![1, 40, 2], "in turns, one hit per section");
        assert_eq!(fused.passages.len(), 3);
    }

    #[test]
    fn a_wording_without_evidence_adds_nothing_when_another_has_some() {
        let noise = retrieval(vec![hit("noise", 9, 0, 0.1)], false);
        let found = retrieval(vec![hit("book", 1, 0, 1.0)], true);
        let fused = crate::retrieve::Retrieval::fuse(vec![noise, found], 5);
        assert!(fused.evidence);
        assert_eq!(fused.hits.len(), 1);
        assert_eq!(fused.hits[0].chunk.source, "book");
    }
}
