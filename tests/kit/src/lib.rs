//! Helpers for lore's tests: paths to the fixtures committed in `tests/fixtures/`, the optional
//! large corpus kept beside the repository, and [`FakeOpenAi`], the one fake OpenAI-compatible
//! server every test talks to.

mod openai;

use std::path::{Path, PathBuf};

pub use openai::{FakeOpenAi, Reply, Request};

/// The repository's `tests/fixtures/<rel>`, whichever crate's test asks.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(rel)
}

/// A file of the large shared corpus (`../shared/data/<rel>` beside the repository, or under
/// `$LORE_SHARED_DATA`), if present. When it is absent, prints one line saying the test was
/// skipped and returns `None`: a fresh clone has no corpus, and its tests must still pass.
pub fn shared_corpus(rel: &str) -> Option<PathBuf> {
    let root = match std::env::var_os("LORE_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    };
    let path = root.join(rel);
    if path.exists() {
        Some(path)
    } else {
        println!("skipped: ../shared/data/{rel} not present");
        None
    }
}
