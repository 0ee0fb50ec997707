//! What a loader produces: a document cut into sections that chunks never cross.

/// The kind of a source, decided from its extension or HTTP content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    Pdf,
    Markdown,
    Text,
    Html,
    Subtitles,
    Docx,
}

/// A loaded source: its sections in reading order.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where it came from: a path as given, a URL, or a chat permalink.
    pub source: String,
    pub kind: DocKind,
    /// The document's own title, when the format carries one (PDF metadata, a Markdown
    /// `# ` heading).
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

/// A stretch of text that chunks must not cross: a PDF page, a Markdown section, a run of
/// subtitle cues. Its metadata travels with every chunk cut from it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    /// Cleaned text.
    pub text: String,
    /// 1-based page number, as a PDF viewer shows it.
    pub page: Option<u32>,
    /// Heading path, e.g. "Guidelines > Tactic 1".
    pub heading: Option<String>,
    /// Subtitle time span, e.g. "00:01:02 --> 00:01:30".
    pub timestamp: Option<String>,
}

impl Document {
    /// Total characters of text, for summaries and quotas.
    pub fn char_count(&self) -> usize {
        self.sections.iter().map(|s| s.text.chars().count()).sum()
    }
}
