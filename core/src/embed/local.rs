//! The in-process multilingual-e5-small embedder behind the [`Embedder`] trait.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::e5::{Batching, E5Model, Kind};
use super::{EmbedError, Embedder};

/// Where lore looks for the model when `embedding.model_path` is unset, and where
/// `scripts/fetch-model.sh` installs it: `$XDG_DATA_HOME/lore/models/e5-small-q4.bin`
/// (`~/.local/share/lore/models/...` without XDG_DATA_HOME), so `lore` finds its model from
/// any working directory.
pub fn default_model_path() -> PathBuf {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data_home.join("lore/models").join(super::e5::MODEL_FILE)
}

/// The model tests and benchmarks use: `LORE_E5_MODEL`, else [`default_model_path`].
pub fn test_model_path() -> PathBuf {
    std::env::var_os(super::e5::MODEL_PATH_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(default_model_path)
}

/// Identity stored with a knowledge base built by this embedder.
const ID: &str = "e5-small-q4/384";

/// multilingual-e5-small (4-bit weights) running on a bounded pool of CPU threads.
pub struct LocalE5Embedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: E5Model,
    /// All compute runs here, so ingest never uses more than the configured threads.
    pool: rayon::ThreadPool,
    batching: Batching,
}

impl LocalE5Embedder {
    /// Loads the E5S1 model file at `path` and sizes the compute pool to `threads`
    /// (0 = one per available core).
    pub fn load(path: &Path, threads: usize) -> Result<Self, EmbedError> {
        let model = E5Model::load(path)?;
        let dim = model.dimension();
        if dim != 384 {
            return Err(EmbedError::Model {
                path: path.display().to_string(),
                reason: format!("expected a 384-dimensional model, found {dim}"),
            });
        }
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("e5-{i}"))
            .build()
            .map_err(|e| EmbedError::Compute(format!("cannot start {threads} threads: {e}")))?;
        let inner = Inner {
            model,
            pool,
            batching: Batching::default(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Number of threads the model computes on.
    pub fn threads(&self) -> usize {
        self.inner.pool.current_num_threads()
    }

    async fn run(&self, texts: Vec<String>, kind: Kind) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        // The forward pass is CPU-bound for up to seconds: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            inner
                .pool
                .install(|| inner.model.embed(&refs, kind, &inner.batching))
        })
        .await
        .map_err(|e| EmbedError::Compute(format!("embedding task failed: {e}")))?
        .map_err(|e| EmbedError::Compute(e.to_string()))
    }
}

#[async_trait]
impl Embedder for LocalE5Embedder {
    fn id(&self) -> &str {
        ID
    }

    fn dimension(&self) -> usize {
        self.inner.model.dimension()
    }

    async fn embed_documents(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.run(texts, Kind::Passage).await
    }

    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = self.run(vec![text.to_owned()], Kind::Query).await?;
        Ok(v.pop().expect("one vector per text"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::embed::e5::MODEL_PATH_ENV;

    /// The real model, loaded once for all tests; `None` (with one line saying so) when absent.
    fn embedder() -> Option<&'static LocalE5Embedder> {
        static MODEL: OnceLock<Option<LocalE5Embedder>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let path = test_model_path();
                if !path.exists() {
                    eprintln!(
                        "e5 model tests did not run: {} not found (run scripts/fetch-model.sh or set {MODEL_PATH_ENV})",
                        path.display()
                    );
                    return None;
                }
                Some(LocalE5Embedder::load(&path, 2).expect("model loads"))
            })
            .as_ref()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb)
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        kind: String,
        text: String,
        content_ids: Vec<u32>,
        vector: Vec<f32>,
    }

    fn fixture() -> Fixture {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/e5_reference.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn kind(case: &Case) -> Kind {
        if case.kind == "query" {
            Kind::Query
        } else {
            Kind::Passage
        }
    }

    #[test]
    fn tokens_match_the_reference_engine() {
        let Some(e) = embedder() else { return };
        for case in fixture().cases {
            let ids = e.inner.model.tokenize(&case.text, kind(&case));
            assert_eq!(
                &ids[1..ids.len() - 1],
                case.content_ids.as_slice(),
                "{:?}",
                case.text
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vectors_match_the_reference_engine() {
        let Some(e) = embedder() else { return };
        let cases = fixture().cases;
        let passages: Vec<String> = cases
            .iter()
            .filter(|c| kind(c) == Kind::Passage)
            .map(|c| c.text.clone())
            .collect();
        let mut docs = e.embed_documents(passages).await.unwrap().into_iter();
        let mut min = f32::INFINITY;
        for case in &cases {
            let got = match kind(case) {
                Kind::Passage => docs.next().unwrap(),
                Kind::Query => e.embed_query(&case.text).await.unwrap(),
            };
            assert_eq!(got.len(), e.dimension());
            let cos = cosine(&got, &case.vector);
            min = min.min(cos);
            assert!(cos > 0.999, "cosine {cos} for {:?}", case.text);
        }
        println!("e5 vs e5.c: min cosine {min:.6} over {} texts", cases.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paraphrases_outscore_unrelated_pairs() {
        let Some(e) = embedder() else { return };
        let pairs = [
            (
                "今天天气很好，我们去公园散步吧。",
                "今天天气不错，一起去公园走走。",
            ),
            (
                "Please submit the quarterly financial report before Friday.",
                "The quarterly finance report is due by Friday.",
            ),
            (
                "机器学习是人工智能的一个分支。",
                "Machine learning is a branch of artificial intelligence.",
            ),
            ("如何申请年假？", "How do I apply for annual leave?"),
        ];
        let unrelated = [
            "这只猫在沙发上睡了一下午。",
            "The stock market fell sharply after the rate announcement.",
        ];
        let texts: Vec<String> = pairs
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .chain(unrelated)
            .map(String::from)
            .collect();
        let v = e.embed_documents(texts).await.unwrap();
        let (u0, u1) = (&v[pairs.len() * 2], &v[pairs.len() * 2 + 1]);
        for (i, (a, b)) in pairs.iter().enumerate() {
            let (va, vb) = (&v[2 * i], &v[2 * i + 1]);
            let same = cosine(va, vb);
            for (label, u) in [("cat", u0), ("stocks", u1)] {
                let other = cosine(va, u).max(cosine(vb, u));
                assert!(
                    same > other,
                    "{a:?}~{b:?} = {same} but vs {label} = {other}"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_give_the_same_vectors_as_sequential_ones() {
        let Some(e) = embedder() else { return };
        let queries = [
            "如何申请年假？",
            "how do I request annual leave?",
            "报销流程",
        ];
        let mut sequential = Vec::new();
        for q in queries {
            sequential.push(e.embed_query(q).await.unwrap());
        }
        let concurrent = futures::future::join_all(queries.map(|q| e.embed_query(q))).await;
        for (c, s) in concurrent.into_iter().zip(&sequential) {
            assert!(cosine(&c.unwrap(), s) > 0.99999);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_batch_and_identity() {
        let Some(e) = embedder() else { return };
        assert!(e.embed_documents(Vec::new()).await.unwrap().is_empty());
        assert_eq!(e.id(), "e5-small-q4/384");
        assert_eq!(e.dimension(), 384);
    }
}
