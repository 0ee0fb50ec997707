//! Loaders: turn a file or URL into a [`Document`] of cleaned sections.
//!
//! `load_bytes` is synchronous, CPU-bound and never panics; `load_path` and `fetch_url`
//! do the I/O, enforce [`LoadLimits`] and run `load_bytes` on the blocking pool.

mod address;
mod docx;
mod html;
mod markdown;
mod pdf;
mod subtitles;
mod text;
mod url;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::ingest::document::{DocKind, Document};

pub use self::url::fetch_url;

/// Bounds on what a loader will read or fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadLimits {
    /// Largest file or response body accepted, in bytes.
    pub max_file_bytes: u64,
    /// Whether URLs may point at loopback, private or link-local addresses.
    pub allow_private_hosts: bool,
    /// Time allowed for a whole fetch, redirects and body included.
    pub fetch_timeout: Duration,
    /// Redirects followed before a fetch gives up.
    pub max_redirects: usize,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 50 * 1024 * 1024,
            allow_private_hosts: false,
            fetch_timeout: Duration::from_secs(30),
            max_redirects: 5,
        }
    }
}

/// Why a file or URL could not be loaded; every message names the file or URL.
// Display and Error are written by hand: thiserror treats any field named `source` as the
// error's cause, and `source` here is the file name the pipeline matches on.
#[derive(Debug)]
pub enum LoadError {
    /// The file type or content type is not one we can read.
    Unsupported { source: String, reason: String },
    /// The file or body is over `LoadLimits::max_file_bytes`.
    TooLarge {
        source: String,
        size: u64,
        limit: u64,
    },
    /// The bytes are not a readable document of the expected kind.
    Corrupt { source: String, reason: String },
    /// Reading the file failed.
    Io { source: String, err: std::io::Error },
    /// The HTTP fetch failed (network, status, timeout).
    Fetch { url: String, reason: String },
    /// The URL is not allowed (scheme, private address).
    Forbidden { url: String, reason: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported { source, reason } => write!(f, "{source}: unsupported: {reason}"),
            Self::TooLarge {
                source,
                size,
                limit,
            } => write!(
                f,
                "{source}: too large ({size} bytes; the limit is {limit} bytes)"
            ),
            Self::Corrupt { source, reason } => write!(f, "{source}: unreadable: {reason}"),
            Self::Io { source, err } => write!(f, "{source}: {err}"),
            Self::Fetch { url, reason } => write!(f, "{url}: fetch failed: {reason}"),
            Self::Forbidden { url, reason } => write!(f, "{url}: refused: {reason}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { err, .. } => Some(err),
            Self::Unsupported { .. }
            | Self::TooLarge { .. }
            | Self::Corrupt { .. }
            | Self::Fetch { .. }
            | Self::Forbidden { .. } => None,
        }
    }
}

impl LoadError {
    pub(crate) fn corrupt(source: &str, reason: impl fmt::Display) -> Self {
        Self::Corrupt {
            source: source.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The document kind for a path, by extension; `None` means unsupported.
pub fn kind_for_path(path: &Path) -> Option<DocKind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => Some(DocKind::Pdf),
        "md" | "markdown" => Some(DocKind::Markdown),
        "txt" | "text" => Some(DocKind::Text),
        "html" | "htm" => Some(DocKind::Html),
        "srt" | "vtt" => Some(DocKind::Subtitles),
        "docx" => Some(DocKind::Docx),
        _ => None,
    }
}

/// Parses `bytes` as a document of `kind`; the result may have no sections (a scanned PDF).
pub fn load_bytes(source: &str, kind: DocKind, bytes: &[u8]) -> Result<Document, LoadError> {
    // Parsers of untrusted files (lopdf above all) can panic; that must not take the
    // ingest down, so a panic becomes `Corrupt`.
    let parsed = catch_unwind(AssertUnwindSafe(|| match kind {
        DocKind::Pdf => pdf::sections(source, bytes),
        DocKind::Markdown => Ok(markdown::sections(&text::decode(source, bytes), None)),
        DocKind::Text => Ok(text::sections(source, bytes)),
        DocKind::Html => html::sections(source, bytes),
        DocKind::Subtitles => Ok(subtitles::sections(&text::decode(source, bytes))),
        DocKind::Docx => docx::sections(source, bytes),
    }));
    let sections = parsed.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(LoadError::corrupt(
            source,
            format!("the {kind:?} parser crashed: {msg}"),
        ))
    })?;
    if sections.is_empty() {
        tracing::warn!(source, ?kind, "no text found");
    }
    Ok(Document {
        source: source.to_string(),
        kind,
        sections,
    })
}

/// Loads a file, checking its size before reading it and parsing it off the async threads.
pub async fn load_path(path: &Path, limits: &LoadLimits) -> Result<Document, LoadError> {
    let source = path.display().to_string();
    let Some(kind) = kind_for_path(path) else {
        return Err(LoadError::Unsupported {
            reason: match path.extension() {
                Some(ext) => format!("no loader for .{} files", ext.to_string_lossy()),
                None => "no file extension".to_string(),
            },
            source,
        });
    };
    let io_err = |err| LoadError::Io {
        source: source.clone(),
        err,
    };
    let meta = tokio::fs::metadata(path).await.map_err(io_err)?;
    if !meta.is_file() {
        return Err(LoadError::Unsupported {
            source,
            reason: "not a regular file".to_string(),
        });
    }
    let limit = limits.max_file_bytes;
    if meta.len() > limit {
        return Err(LoadError::TooLarge {
            source,
            size: meta.len(),
            limit,
        });
    }
    // The file may grow between the size check and the read, so the read is capped too.
    let file = tokio::fs::File::open(path).await.map_err(io_err)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .map_err(io_err)?;
    if bytes.len() as u64 > limit {
        return Err(LoadError::TooLarge {
            source,
            size: bytes.len() as u64,
            limit,
        });
    }
    load_bytes_blocking(source, kind, bytes).await
}

/// Runs `load_bytes` on the blocking pool; a panic in a parser becomes `Corrupt`.
pub(crate) async fn load_bytes_blocking(
    source: String,
    kind: DocKind,
    bytes: Vec<u8>,
) -> Result<Document, LoadError> {
    let name = source.clone();
    tokio::task::spawn_blocking(move || load_bytes(&source, kind, &bytes))
        .await
        .unwrap_or_else(|join_err| {
            Err(LoadError::corrupt(
                &name,
                format!("loader crashed: {join_err}"),
            ))
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random byte strings (xorshift), for never-panic tests.
    pub(crate) fn garbage(count: usize) -> Vec<Vec<u8>> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|i| {
                let len = (next() % 600) as usize + i % 3;
                (0..len).map(|_| next() as u8).collect()
            })
            .collect()
    }

    #[test]
    fn kind_is_chosen_by_extension() {
        assert_eq!(kind_for_path(Path::new("a/b.PDF")), Some(DocKind::Pdf));
        assert_eq!(
            kind_for_path(Path::new("x.markdown")),
            Some(DocKind::Markdown)
        );
        assert_eq!(kind_for_path(Path::new("x.md")), Some(DocKind::Markdown));
        assert_eq!(kind_for_path(Path::new("x.htm")), Some(DocKind::Html));
        assert_eq!(kind_for_path(Path::new("x.vtt")), Some(DocKind::Subtitles));
        assert_eq!(kind_for_path(Path::new("x.srt")), Some(DocKind::Subtitles));
        assert_eq!(kind_for_path(Path::new("x.docx")), Some(DocKind::Docx));
        assert_eq!(kind_for_path(Path::new("x.txt")), Some(DocKind::Text));
    }

    #[test]
    fn unsupported_extension_has_no_kind() {
        assert_eq!(kind_for_path(Path::new("x.exe")), None);
        assert_eq!(kind_for_path(Path::new("x.doc")), None);
        assert_eq!(kind_for_path(Path::new("Makefile")), None);
    }

    #[tokio::test]
    async fn unsupported_file_is_refused_with_its_name() {
        let err = load_path(Path::new("/nonexistent/report.exe"), &LoadLimits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, LoadError::Unsupported { .. }));
        assert!(err.to_string().contains("report.exe"), "{err}");
    }

    #[tokio::test]
    async fn oversized_file_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        // A sparse 1 TiB file: reading it first would exhaust memory, and only a size
        // check made before reading can report its full length.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(1 << 40).unwrap();
        let err = load_path(&path, &LoadLimits::default()).await.unwrap_err();
        match &err {
            LoadError::TooLarge { size, limit, .. } => {
                assert_eq!((*size, *limit), (1 << 40, 50 * 1024 * 1024))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(err.to_string().contains("big.txt"), "{err}");
    }

    #[tokio::test]
    async fn missing_file_is_an_io_error_naming_it() {
        let err = load_path(Path::new("/nonexistent/notes.md"), &LoadLimits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, LoadError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/notes.md"), "{err}");
    }

    #[tokio::test]
    async fn text_file_loads_through_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("note.txt");
        std::fs::write(&path, "机 器 学 习\r\n很有趣").unwrap();
        let doc = load_path(&path, &LoadLimits::default()).await.unwrap();
        assert_eq!(doc.kind, DocKind::Text);
        assert_eq!(doc.source, path.display().to_string());
        assert_eq!(doc.sections.len(), 1);
        assert_eq!(doc.sections[0].text, "机器学习很有趣");
    }

    #[test]
    fn no_loader_panics_on_garbage() {
        let kinds = [
            DocKind::Pdf,
            DocKind::Markdown,
            DocKind::Text,
            DocKind::Html,
            DocKind::Subtitles,
            DocKind::Docx,
        ];
        for bytes in garbage(300) {
            for kind in kinds {
                let _ = load_bytes("garbage.bin", kind, &bytes);
            }
        }
    }
}
