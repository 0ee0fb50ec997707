//! Loaders: turn a file or URL into a [`Document`] of cleaned sections.
//!
//! `load_bytes` is synchronous, CPU-bound and never panics; `load_path` and `fetch_url`
//! do the I/O, enforce [`LoadLimits`] and run `load_bytes` on the blocking pool.

mod address;
mod budget;
mod docx;
mod html;
mod markdown;
mod pdf;
#[cfg(test)]
mod proptests;
mod subtitles;
mod text;
mod url;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use self::budget::Budget;
use crate::ingest::IngestSettings;
use crate::ingest::document::{DocKind, Document, Section};

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
    /// Most bytes one file may inflate to: a DOCX part, a PDF stream.
    pub max_decompressed_bytes: u64,
    /// Deepest nesting of elements read from HTML or DOCX XML.
    pub max_depth: usize,
    /// Most elements (HTML tags, XML elements, subtitle cues) read from one file.
    pub max_elements: usize,
    /// Time to parse and clean one file, checked inside the loaders' loops.
    pub max_load_time: Duration,
}

/// Bytes in a MiB, for the settings given in MiB.
const MIB: u64 = 1024 * 1024;

impl LoadLimits {
    /// The limits set in `[ingest]`.
    pub fn from_settings(settings: &IngestSettings) -> Self {
        Self {
            max_file_bytes: settings.max_file_mib.saturating_mul(MIB),
            allow_private_hosts: settings.allow_private_hosts,
            fetch_timeout: Duration::from_secs(settings.fetch_timeout_secs),
            max_decompressed_bytes: settings.max_decompressed_mib.saturating_mul(MIB),
            max_depth: settings.max_nesting_depth,
            max_elements: settings.max_elements,
            max_load_time: Duration::from_secs(settings.load_timeout_secs),
            ..Self::default()
        }
    }
}

/// The defaults of settings.toml (a test checks they agree), for callers without settings.
impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 50 * MIB,
            allow_private_hosts: false,
            fetch_timeout: Duration::from_secs(30),
            max_redirects: 5,
            max_decompressed_bytes: 64 * MIB,
            max_depth: 512,
            max_elements: 500_000,
            max_load_time: Duration::from_secs(60),
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
    /// Loading would pass one of [`LoadLimits`]: too deep, too many elements, too slow,
    /// inflating too far. The reason names the setting.
    OverLimit { source: String, reason: String },
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
            Self::OverLimit { source, reason } => write!(f, "{source}: over a limit: {reason}"),
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
            | Self::Forbidden { .. }
            | Self::OverLimit { .. } => None,
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

/// Parses `bytes` as a document of `kind` within the default [`LoadLimits`]; the result
/// may have no sections (a scanned PDF).
pub fn load_bytes(source: &str, kind: DocKind, bytes: &[u8]) -> Result<Document, LoadError> {
    load_bytes_within(source, kind, bytes, &LoadLimits::default())
}

/// Parses `bytes` as a document of `kind`, stopping with [`LoadError::OverLimit`] at the
/// first of `limits` it would pass.
pub fn load_bytes_within(
    source: &str,
    kind: DocKind,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, LoadError> {
    let mut budget = Budget::new(source, limits);
    let budget = &mut budget;
    // Parsers of untrusted files (lopdf above all) can panic; that must not take the
    // ingest down, so a panic becomes `Corrupt`.
    let untitled =
        |sections: Result<Vec<Section>, LoadError>| sections.map(|s| (s, None::<String>));
    let parsed = catch_unwind(AssertUnwindSafe(|| match kind {
        DocKind::Pdf => pdf::sections(source, bytes, budget),
        DocKind::Markdown => {
            let text = text::decode(source, bytes);
            let title = markdown::title(&text);
            markdown::sections(&text, None, budget).map(|s| (s, title))
        }
        DocKind::Text => Ok((text::sections(source, bytes), None)),
        DocKind::Html => untitled(html::sections(source, bytes, budget)),
        DocKind::Subtitles => untitled(subtitles::sections(&text::decode(source, bytes), budget)),
        DocKind::Docx => untitled(docx::sections(source, bytes, budget)),
    }));
    let (sections, title) = parsed.unwrap_or_else(|panic| {
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
        title,
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
    load_bytes_blocking(source, kind, bytes, limits).await
}

/// Runs `load_bytes_within` on the blocking pool; a panic in a parser becomes `Corrupt`.
pub(crate) async fn load_bytes_blocking(
    source: String,
    kind: DocKind,
    bytes: Vec<u8>,
    limits: &LoadLimits,
) -> Result<Document, LoadError> {
    let name = source.clone();
    let limits = limits.clone();
    tokio::task::spawn_blocking(move || load_bytes_within(&source, kind, &bytes, &limits))
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
    fn default_limits_are_those_of_settings_toml() {
        let settings: IngestSettings = crate::test_defaults::section("ingest");
        assert_eq!(LoadLimits::from_settings(&settings), LoadLimits::default());
    }

    #[test]
    fn limits_come_from_the_settings() {
        let mut settings: IngestSettings = crate::test_defaults::section("ingest");
        settings.max_nesting_depth = 7;
        settings.max_elements = 9;
        settings.max_decompressed_mib = 2;
        settings.load_timeout_secs = 3;
        let limits = LoadLimits::from_settings(&settings);
        assert_eq!(
            (
                limits.max_depth,
                limits.max_elements,
                limits.max_decompressed_bytes,
                limits.max_load_time
            ),
            (7, 9, 2 * MIB, Duration::from_secs(3))
        );
        let html = "<div>".repeat(8);
        let err = load_bytes_within("d.html", DocKind::Html, html.as_bytes(), &limits).unwrap_err();
        assert!(matches!(err, LoadError::OverLimit { .. }), "{err:?}");
    }

    #[test]
    fn the_load_deadline_stops_a_loader_midway() {
        // A page of plain markup that would load fine, given no time at all.
        let limits = LoadLimits {
            max_load_time: Duration::ZERO,
            ..LoadLimits::default()
        };
        let md = "# Title\n\nline\n".repeat(5000);
        let srt: String = (0..3000)
            .map(|i| format!("{i}\n00:00:01,000 --> 00:00:02,000\ncue {i}\n\n"))
            .collect();
        for (name, kind, bytes) in [
            ("slow.md", DocKind::Markdown, md.as_bytes()),
            ("slow.srt", DocKind::Subtitles, srt.as_bytes()),
        ] {
            let err = load_bytes_within(name, kind, bytes, &limits).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(name) && msg.contains("ingest.load_timeout_secs"),
                "{msg}"
            );
        }
    }

    /// Each hostile file ends with its text or a clear error naming it. Inputs are made
    /// here, never committed.
    #[tokio::test]
    async fn hostile_files_end_with_text_or_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LoadLimits::default();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        // HTML nested a million levels: over 10 minutes before the depth check.
        let deep = "<div>".repeat(1_000_000) + "x" + &"</div>".repeat(1_000_000);
        let err = load_path(&write("deep.html", deep.as_bytes()), &limits)
            .await
            .unwrap_err();
        assert!(matches!(err, LoadError::OverLimit { .. }), "{err}");
        // A 200 MB single line: refused by its size before it is read (a sparse file).
        let path = dir.path().join("line.txt");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(200 * MIB)
            .unwrap();
        let err = load_path(&path, &limits).await.unwrap_err();
        assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
        // Random bytes named .pdf: not a PDF, said so.
        let random: Vec<u8> = garbage(64).concat().repeat(200);
        let err = load_path(&write("random.pdf", &random), &limits)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LoadError::Corrupt { .. }) && err.to_string().contains("random.pdf"),
            "{err}"
        );
        // Invalid UTF-8 (and not GB18030): its text, with the bad bytes replaced.
        let mut bad = b"caf\xc3 ok ".repeat(1000);
        bad.extend_from_slice(b"\xff\xfe\xfd end");
        let doc = load_path(&write("bad.txt", &bad), &limits).await.unwrap();
        assert!(doc.sections[0].text.ends_with("end"), "{:?}", doc.sections);
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
