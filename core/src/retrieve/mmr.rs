//! Maximal marginal relevance over scored candidates, with dense vectors when the store
//! has them and BM25 vectors otherwise, so it works for every backend and mode.

use std::collections::HashMap;

use crate::store::{Hit, SparseVector};

/// Picks `k` hits balancing relevance (the candidate's score, scaled to 0..1) against
/// similarity to hits already picked. `lambda` = 1 is pure relevance.
pub fn select(mut candidates: Vec<Hit>, k: usize, lambda: f32) -> Vec<Hit> {
    let max_score = candidates.iter().map(|h| h.score).fold(f32::MIN, f32::max);
    let relevance: Vec<f32> = candidates
        .iter()
        .map(|h| {
            if max_score > 0.0 {
                h.score / max_score
            } else {
                0.0
            }
        })
        .collect();
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut remaining: Vec<usize> = (0..candidates.len()).collect();
    while chosen.len() < k && !remaining.is_empty() {
        let (pos, _) = remaining
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                let redundancy = chosen
                    .iter()
                    .map(|&j| similarity(&candidates[i], &candidates[j]))
                    .fold(0.0f32, f32::max);
                (pos, lambda * relevance[i] - (1.0 - lambda) * redundancy)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("remaining is not empty");
        chosen.push(remaining.remove(pos));
    }
    // Move the chosen hits out in pick order.
    let mut slots: Vec<Option<Hit>> = candidates.drain(..).map(Some).collect();
    chosen.into_iter().filter_map(|i| slots[i].take()).collect()
}

fn similarity(a: &Hit, b: &Hit) -> f32 {
    match (&a.dense, &b.dense) {
        (Some(x), Some(y)) => cosine(x, y),
        _ => match (&a.sparse, &b.sparse) {
            (Some(x), Some(y)) => sparse_cosine(x, y),
            _ => 0.0,
        },
    }
}

/// Cosine similarity of two dense vectors; 0 when either is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

fn sparse_cosine(a: &SparseVector, b: &SparseVector) -> f32 {
    let weights: HashMap<u32, f32> = a
        .indices
        .iter()
        .copied()
        .zip(a.values.iter().copied())
        .collect();
    let dot: f32 = b
        .indices
        .iter()
        .zip(&b.values)
        .filter_map(|(i, v)| weights.get(i).map(|w| w * v))
        .sum();
    let norm = |v: &SparseVector| v.values.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Chunk;

    fn hit(score: f32, dense: Vec<f32>, name: &str) -> Hit {
        Hit {
            score,
            chunk: Chunk {
                tenant: "t".into(),
                source: name.into(),
                index: 0,
                text: name.into(),
                page: None,
                heading: None,
                timestamp: None,
                title: None,
                start: 0,
                end: 0,
                source_hash: String::new(),
            },
            dense: Some(dense),
            sparse: None,
        }
    }

    #[test]
    fn near_duplicate_gives_way_to_a_different_passage() {
        let hits = vec![
            hit(1.0, vec![1.0, 0.0], "a"),
            hit(0.95, vec![0.999, 0.01], "a-copy"),
            hit(0.8, vec![0.0, 1.0], "b"),
        ];
        let picked: Vec<_> = select(hits.clone(), 2, 0.5)
            .into_iter()
            .map(|h| h.chunk.source)
            .collect();
        assert_eq!(picked, ["a", "b"]);
        // Pure relevance keeps score order.
        let picked: Vec<_> = select(hits, 2, 1.0)
            .into_iter()
            .map(|h| h.chunk.source)
            .collect();
        assert_eq!(picked, ["a", "a-copy"]);
    }

    #[test]
    fn empty_and_short_inputs() {
        assert!(select(vec![], 3, 0.7).is_empty());
        assert_eq!(select(vec![hit(0.0, vec![0.0, 0.0], "z")], 3, 0.7).len(), 1);
    }
}
