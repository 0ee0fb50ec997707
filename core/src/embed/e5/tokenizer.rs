//! XLM-R SentencePiece-unigram tokenizer, driven by the vocabulary and codepoint map of an
//! E5S1 file: normalise, collapse spaces, add the `▁` metaspace, then Viterbi over the pieces.

use super::format::{NormMap, Vocab};

/// SentencePiece's metaspace marker, which stands for a space inside pieces.
const METASPACE: char = '\u{2581}';
/// How far below the lowest piece score an unknown character scores (SentencePiece's rule).
const UNK_PENALTY: f32 = 10.0;

/// Turns text into XLM-R token ids.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    norm: NormMap,
    /// Open-addressing table of `piece id + 1` (0 = empty), keyed by FNV-1a of the piece bytes.
    table: Vec<u32>,
    mask: usize,
    max_piece_bytes: usize,
    unk_score: f32,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Tokenizer {
    /// Builds the lookup structures for a vocabulary and normalisation map.
    pub fn new(vocab: Vocab, norm: NormMap) -> Self {
        let n = vocab.scores.len();
        let size = (n * 2).next_power_of_two().max(2);
        let mask = size - 1;
        let mut table = vec![0u32; size];
        let mut max_piece_bytes = 1;
        for id in 0..n {
            let piece = piece_bytes(&vocab, id);
            if piece.is_empty() {
                continue;
            }
            max_piece_bytes = max_piece_bytes.max(piece.len());
            // Inserting in id order makes a duplicated piece resolve to its lowest id.
            let mut slot = fnv1a(piece) as usize & mask;
            while table[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            table[slot] = id as u32 + 1;
        }
        let min_score = vocab.scores.iter().copied().fold(f32::INFINITY, f32::min);
        Self {
            unk_score: min_score - UNK_PENALTY,
            table,
            mask,
            max_piece_bytes,
            vocab,
            norm,
        }
    }

    /// Id of the `<s>` token.
    pub fn bos(&self) -> u32 {
        self.vocab.bos
    }

    /// Id of the `</s>` token.
    pub fn eos(&self) -> u32 {
        self.vocab.eos
    }

    /// Number of pieces in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.scores.len()
    }

    /// Tokenizes `text` as `<s> pieces… </s>`, keeping at most `max_len` ids in all
    /// (the head of the text is kept).
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let content_cap = max_len.saturating_sub(2);
        let mut ids = Vec::with_capacity(content_cap.min(text.len()) + 2);
        ids.push(self.vocab.bos);
        let content = self.content_ids(text);
        ids.extend(content.into_iter().take(content_cap));
        ids.push(self.vocab.eos);
        ids
    }

    /// The content pieces of `text`, without `<s>`/`</s>`.
    pub fn content_ids(&self, text: &str) -> Vec<u32> {
        let (buf, bounds) = self.normalize(text);
        self.viterbi(buf.as_bytes(), &bounds)
    }

    /// Applies the codepoint map, collapses runs of spaces, prefixes `▁` unless the text
    /// already starts with a space, and turns spaces into `▁`. Returns the normalised text
    /// and the byte offset of every character boundary (including the end).
    fn normalize(&self, text: &str) -> (String, Vec<usize>) {
        let mut chars: Vec<char> = Vec::with_capacity(text.len() + 1);
        for ch in text.chars() {
            match self.norm.cps.binary_search(&(ch as u32)) {
                Ok(i) => {
                    let (a, b) = (self.norm.off[i] as usize, self.norm.off[i + 1] as usize);
                    chars.extend_from_slice(&self.norm.out[a..b]);
                }
                Err(_) => chars.push(ch),
            }
        }
        chars.dedup_by(|cur, prev| *cur == ' ' && *prev == ' ');
        let mut buf = String::with_capacity(chars.len() * 3 + 3);
        let mut bounds = Vec::with_capacity(chars.len() + 2);
        if chars.first() != Some(&' ') {
            bounds.push(0);
            buf.push(METASPACE);
        }
        for ch in chars {
            bounds.push(buf.len());
            buf.push(if ch == ' ' { METASPACE } else { ch });
        }
        bounds.push(buf.len());
        (buf, bounds)
    }

    fn lookup(&self, piece: &[u8]) -> Option<u32> {
        let mut slot = fnv1a(piece) as usize & self.mask;
        loop {
            let entry = self.table[slot];
            if entry == 0 {
                return None;
            }
            let id = entry - 1;
            if piece_bytes(&self.vocab, id as usize) == piece {
                return Some(id);
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// Best-scoring segmentation of `buf` at character `bounds`. Ties keep the earliest
    /// start, and an unknown character costs `unk_score` on its own.
    fn viterbi(&self, buf: &[u8], bounds: &[usize]) -> Vec<u32> {
        let n = bounds.len() - 1;
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        // For each end position: the piece that ends there (None = unknown) and its start.
        let mut back: Vec<(Option<u32>, usize)> = vec![(None, 0); n + 1];
        best[0] = 0.0;
        for i in 0..n {
            let start = bounds[i];
            for e in i + 1..=n {
                if bounds[e] - start > self.max_piece_bytes {
                    break;
                }
                let Some(id) = self.lookup(&buf[start..bounds[e]]) else {
                    continue;
                };
                if id == self.vocab.unk {
                    continue;
                }
                let score = best[i] + self.vocab.scores[id as usize];
                if score > best[e] {
                    best[e] = score;
                    back[e] = (Some(id), i);
                }
            }
            let score = best[i] + self.unk_score;
            if score > best[i + 1] {
                best[i + 1] = score;
                back[i + 1] = (None, i);
            }
        }
        let mut ids = Vec::new();
        let mut e = n;
        while e > 0 {
            let (id, from) = back[e];
            ids.push(id.unwrap_or(self.vocab.unk));
            e = from;
        }
        ids.reverse();
        ids
    }
}

fn piece_bytes(vocab: &Vocab, id: usize) -> &[u8] {
    &vocab.blob[vocab.offsets[id] as usize..vocab.offsets[id + 1] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::e5::testdata::{toy_norm, toy_vocab};

    fn toy() -> Tokenizer {
        Tokenizer::new(toy_vocab(), toy_norm())
    }

    fn pieces(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| String::from_utf8(piece_bytes(&t.vocab, id as usize).to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn viterbi_prefers_the_highest_total_score() {
        let t = toy();
        // "▁hello" (-1) beats "▁he"+"llo" (-2 + -2) and single letters.
        assert_eq!(pieces(&t, &t.content_ids("hello")), ["▁hello"]);
        // "▁hello"+"llo" (-3) beats "▁he"+"llo"+"llo" (-6) and single letters.
        assert_eq!(pieces(&t, &t.content_ids("hellollo")), ["▁hello", "llo"]);
        assert_eq!(
            pieces(&t, &t.content_ids("hello world")),
            ["▁hello", "▁world"]
        );
    }

    #[test]
    fn encode_wraps_in_bos_eos_and_truncates_the_tail() {
        let t = toy();
        let ids = t.encode("hello world", 512);
        assert_eq!(ids.first(), Some(&t.bos()));
        assert_eq!(ids.last(), Some(&t.eos()));
        assert_eq!(ids.len(), 4);
        let cut = t.encode("hello world", 3);
        assert_eq!(pieces(&t, &cut), ["<s>", "▁hello", "</s>"]);
    }

    #[test]
    fn unknown_characters_become_unk_one_each() {
        let t = toy();
        let ids = t.content_ids("hello 猫狗");
        assert_eq!(pieces(&t, &ids), ["▁hello", "▁", "<unk>", "<unk>"]);
    }

    #[test]
    fn normalisation_maps_deletes_and_collapses_spaces() {
        let t = toy();
        // Tab maps to a space, U+0001 is deleted, full-width Ｈ maps to H, spaces collapse.
        let (buf, bounds) = t.normalize("\u{1}Ｈello \t  world");
        assert_eq!(buf, "▁Hello▁world");
        assert_eq!(bounds.len(), "▁Hello▁world".chars().count() + 1);
        // A leading space becomes the metaspace itself rather than gaining a second one.
        assert_eq!(t.normalize(" hello").0, "▁hello");
        assert_eq!(t.normalize("").0, "▁");
    }

    #[test]
    fn ties_keep_the_earliest_split() {
        let t = toy();
        // "▁ab" (-6) and "▁a"+"b" (-3 + -3) score the same; the one found first (the piece
        // starting earliest) must not be replaced by an equal score.
        assert_eq!(pieces(&t, &t.content_ids("ab")), ["▁ab"]);
    }
}
