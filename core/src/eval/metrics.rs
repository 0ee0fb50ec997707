//! Metric functions, pure and hand-checkable: retrieval ranks (recall@k, MRR, nDCG@10) and
//! answer scores (CMRC exact match and character F1, smoothed BLEU, multiple choice).

use std::collections::HashMap;

/// 1-based rank of the first relevant item, `None` when none of the retrieved items is.
///
/// Ranking is the order the store returned, which is the order an answer uses; several
/// relevant items (chunks of the gold passage) count once, at the best of them.
pub fn first_relevant_rank(relevant: &[bool]) -> Option<usize> {
    relevant.iter().position(|r| *r).map(|i| i + 1)
}

/// True when the first relevant item shares its score with an item ranked above it, so a
/// different tie-break could move it; reported per case so fragile hits are visible.
pub fn rank_is_tied(scores: &[f32], rank: Option<usize>) -> bool {
    match rank {
        Some(r) if r > 1 => scores[..r - 1].iter().any(|s| *s == scores[r - 1]),
        _ => false,
    }
}

/// Share of queries whose first relevant rank is at most `k`; 0 for no queries.
pub fn recall_at(ranks: &[Option<usize>], k: usize) -> f64 {
    mean(
        ranks
            .iter()
            .map(|r| f64::from(u8::from(r.is_some_and(|r| r <= k)))),
    )
}

/// Mean reciprocal rank of the first relevant item (0 for a miss); 0 for no queries.
pub fn mrr(ranks: &[Option<usize>]) -> f64 {
    mean(ranks.iter().map(|r| r.map_or(0.0, |r| 1.0 / r as f64)))
}

/// Mean nDCG@k with one relevant item per query: the ideal DCG is 1, so a hit at rank r
/// scores 1/log2(r+1).
pub fn ndcg_at(ranks: &[Option<usize>], k: usize) -> f64 {
    mean(ranks.iter().map(|r| match r {
        Some(r) if *r <= k => 1.0 / ((*r as f64) + 1.0).log2(),
        _ => 0.0,
    }))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// CMRC 2018's segmentation: every CJK character (and other non-ASCII symbol) alone, runs
/// of ASCII letters and digits as one token, punctuation and spaces dropped.
pub fn cmrc_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for ch in text.to_lowercase().chars() {
        if ch.is_ascii_alphanumeric() {
            word.push(ch);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        if !(ch.is_whitespace() || is_punctuation(ch)) {
            tokens.push(ch.to_string());
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

fn is_punctuation(ch: char) -> bool {
    ch.is_ascii_punctuation()
        || "，。、；：？！“”‘’（）《》〈〉【】『』「」﹃﹄〔〕…—～﹏￥·．".contains(ch)
}

/// CMRC exact match: 1 when the prediction equals some reference after segmentation.
pub fn exact_match(prediction: &str, references: &[String]) -> f64 {
    let p = cmrc_tokens(prediction);
    let hit = references.iter().any(|r| cmrc_tokens(r) == p);
    f64::from(u8::from(hit))
}

/// CMRC character F1: the longest common run of tokens against each reference, best
/// reference wins. Fair to Chinese, where word boundaries are ambiguous.
pub fn char_f1(prediction: &str, references: &[String]) -> f64 {
    let p = cmrc_tokens(prediction);
    references
        .iter()
        .map(|r| {
            let r = cmrc_tokens(r);
            let common = longest_common_run(&p, &r);
            if common == 0 {
                return 0.0;
            }
            let precision = common as f64 / p.len() as f64;
            let recall = common as f64 / r.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}

/// Length of the longest common contiguous run, as CMRC's `find_lcs` computes it.
fn longest_common_run(a: &[String], b: &[String]) -> usize {
    let mut best = 0;
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut row = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            if x == y {
                row[j + 1] = prev[j] + 1;
                best = best.max(row[j + 1]);
            }
        }
        prev = row;
    }
    best
}

/// Sentence BLEU-4 over already segmented tokens, with add-one smoothing of the 2- to 4-gram
/// precisions (Lin and Och) so one missing 4-gram does not zero a short answer.
pub fn smoothed_bleu(candidate: &[String], reference: &[String]) -> f64 {
    if candidate.is_empty() || reference.is_empty() {
        return 0.0;
    }
    let mut log_sum = 0.0;
    for n in 1..=4 {
        let cand = ngrams(candidate, n);
        let refs = ngrams(reference, n);
        let total: usize = cand.values().sum();
        let clipped: usize = cand
            .iter()
            .map(|(g, c)| (*c).min(refs.get(g).copied().unwrap_or(0)))
            .sum();
        let (num, den) = if n == 1 {
            (clipped as f64, total as f64)
        } else {
            (clipped as f64 + 1.0, total as f64 + 1.0)
        };
        if num == 0.0 {
            return 0.0;
        }
        log_sum += (num / den).ln() / 4.0;
    }
    let (c, r) = (candidate.len() as f64, reference.len() as f64);
    let brevity = if c >= r { 1.0 } else { (1.0 - r / c).exp() };
    brevity * log_sum.exp()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

/// The tutorial's multiple-choice score: −1 if any wrong option is picked, 0 for no pick,
/// 1 for all correct options, 0.5 for some of them and nothing wrong.
pub fn multiple_choice(correct: &str, picked: &str) -> f64 {
    let options = |s: &str| -> Vec<char> {
        let mut v: Vec<char> = s.chars().filter(char::is_ascii_uppercase).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (correct, picked) = (options(correct), options(picked));
    if picked.iter().any(|p| !correct.contains(p)) {
        -1.0
    } else if picked.is_empty() {
        0.0
    } else if picked.len() == correct.len() {
        1.0
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ranks_hand_computed() {
        // Hits at 1, 3, a miss, and a hit at 12 (beyond nDCG@10).
        let ranks = [Some(1), Some(3), None, Some(12)];
        assert!(close(recall_at(&ranks, 1), 0.25));
        assert!(close(recall_at(&ranks, 3), 0.5));
        assert!(close(recall_at(&ranks, 20), 0.75));
        assert!(close(
            mrr(&ranks),
            (1.0 + 1.0 / 3.0 + 0.0 + 1.0 / 12.0) / 4.0
        ));
        assert!(close(ndcg_at(&ranks, 10), (1.0 + 0.5) / 4.0)); // 1/log2(4) = 0.5
    }

    #[test]
    fn empty_results_and_empty_sets_score_zero() {
        assert_eq!(first_relevant_rank(&[]), None);
        assert!(close(recall_at(&[], 5), 0.0));
        assert!(close(mrr(&[]), 0.0));
        assert!(close(ndcg_at(&[], 10), 0.0));
        assert!(close(mrr(&[None, None]), 0.0));
    }

    #[test]
    fn several_relevant_chunks_count_once_at_the_best_rank() {
        let rank = first_relevant_rank(&[false, true, true, false]);
        assert_eq!(rank, Some(2));
        assert!(close(mrr(&[rank]), 0.5));
    }

    #[test]
    fn ties_follow_store_order_and_are_flagged() {
        assert!(rank_is_tied(&[0.9, 0.5, 0.5], Some(3)));
        assert!(!rank_is_tied(&[0.9, 0.6, 0.5], Some(3)));
        assert!(!rank_is_tied(&[0.5, 0.5], Some(1)));
        assert!(!rank_is_tied(&[0.5], None));
    }

    #[test]
    fn cmrc_segmentation_keeps_english_words_whole() {
        assert_eq!(
            cmrc_tokens("在 2018 年，Rust语言！"),
            ["在", "2018", "年", "rust", "语", "言"]
        );
    }

    #[test]
    fn exact_match_ignores_punctuation_and_case() {
        let refs = vec!["《红楼梦》".to_string(), "Hong Lou Meng".to_string()];
        assert!(close(exact_match("红楼梦", &refs), 1.0));
        assert!(close(exact_match("hong lou meng.", &refs), 1.0));
        assert!(close(exact_match("红楼", &refs), 0.0));
    }

    #[test]
    fn char_f1_hand_computed() {
        let refs = vec!["北京大学".to_string()];
        // Common run 北京 (2): p = 2/3, r = 2/4, F1 = 4/7.
        assert!(close(char_f1("北京市", &refs), 4.0 / 7.0));
        assert!(close(char_f1("北京大学", &refs), 1.0));
        assert!(close(char_f1("", &refs), 0.0));
        assert!(close(char_f1("上海", &refs), 0.0));
    }

    #[test]
    fn bleu_hand_computed() {
        let t = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert!(close(smoothed_bleu(&t("a b c d"), &t("a b c d")), 1.0));
        assert!(close(smoothed_bleu(&t("x y"), &t("a b")), 0.0));
        assert!(close(smoothed_bleu(&[], &t("a")), 0.0));
        // "a b" vs "a b c": p1 = 2/2, p2 = (1+1)/(1+1), p3 = p4 = (0+1)/(0+1); BP = e^(1-3/2).
        assert!(close(
            smoothed_bleu(&t("a b"), &t("a b c")),
            (-0.5f64).exp()
        ));
    }

    #[test]
    fn multiple_choice_penalises_a_wrong_pick() {
        assert!(close(multiple_choice("BCD", "BCD"), 1.0));
        assert!(close(multiple_choice("BCD", "B"), 0.5));
        assert!(close(multiple_choice("BCD", ""), 0.0));
        assert!(close(multiple_choice("BCD", "AB"), -1.0));
        assert!(close(multiple_choice("A", "答案是 A"), 1.0));
    }
}
