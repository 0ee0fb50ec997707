//! Splitting sections into chunks: structure-aware for Markdown and HTML, Unicode-sentence
//! aware for everything else (so Chinese splits at 。！？ rather than mid-word).

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

use super::document::{DocKind, Section};

/// A piece of a section: byte offsets into the section text, and the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Cuts sections into chunks of at most `size` characters with `overlap` shared characters.
pub struct Splitter {
    text: TextSplitter<text_splitter::Characters>,
    markdown: MarkdownSplitter<text_splitter::Characters>,
    signature: String,
}

impl Splitter {
    /// `overlap` must be smaller than `size` (the settings loader checks this).
    pub fn new(size: usize, overlap: usize) -> Self {
        let config = || {
            ChunkConfig::new(size)
                .with_overlap(overlap)
                .expect("overlap < size is validated with the settings")
        };
        Self {
            text: TextSplitter::new(config()),
            markdown: MarkdownSplitter::new(config()),
            signature: format!("split-{size}-{overlap}"),
        }
    }

    /// Identifies the chunking, so a settings change re-chunks unchanged files.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// Chunks of one section; never crosses the section (a PDF page stays whole).
    pub fn split(&self, kind: DocKind, section: &Section) -> Vec<Piece> {
        let text = section.text.as_str();
        let pieces: Vec<(usize, &str)> = match kind {
            DocKind::Markdown | DocKind::Html | DocKind::Docx => self
                .markdown
                .chunk_char_indices(text)
                .map(to_pair)
                .collect(),
            DocKind::Pdf | DocKind::Text | DocKind::Subtitles => {
                self.text.chunk_char_indices(text).map(to_pair).collect()
            }
        };
        pieces
            .into_iter()
            .filter(|(_, chunk)| has_content(chunk))
            .map(|(start, chunk)| Piece {
                start,
                end: start + chunk.len(),
                text: chunk.to_owned(),
            })
            .collect()
    }
}

/// False for blank pieces and for a Markdown heading alone: the heading path already
/// travels with every chunk of its section, so such a chunk would only crowd results.
fn has_content(chunk: &str) -> bool {
    let trimmed = chunk.trim();
    let lone_heading = trimmed.starts_with('#') && !trimmed.contains('\n');
    !trimmed.is_empty() && !lone_heading
}

fn to_pair(c: text_splitter::ChunkCharIndex<'_>) -> (usize, &str) {
    (c.byte_offset, c.chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Section {
        Section {
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn chinese_text_splits_at_sentence_ends_within_the_limit() {
        let sentence = "机器学习是人工智能的一个分支，它研究如何让计算机从数据中学习规律。";
        let text = sentence.repeat(20);
        let pieces = Splitter::new(100, 0).split(DocKind::Text, &section(&text));
        assert!(pieces.len() > 5);
        for p in &pieces {
            assert!(p.text.chars().count() <= 100);
            assert!(p.text.ends_with('。'), "{}", p.text);
            assert_eq!(&text[p.start..p.end], p.text);
        }
    }

    #[test]
    fn markdown_keeps_code_fences_together_when_they_fit() {
        let text = "# Title\n\nSome words here.\n\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```\n\nMore words after the code.";
        let pieces = Splitter::new(60, 0).split(DocKind::Markdown, &section(text));
        assert!(
            pieces
                .iter()
                .any(|p| p.text.starts_with("```rust") && p.text.ends_with("```"))
        );
    }

    #[test]
    fn a_heading_alone_is_not_a_chunk() {
        let text = format!(
            "## Adding documents\n\n{}",
            "Add documents with lore ingest. ".repeat(6)
        );
        let pieces = Splitter::new(60, 0).split(DocKind::Markdown, &section(&text));
        assert!(pieces.len() > 1);
        assert!(
            pieces.iter().all(|p| !p.text.trim().starts_with("##")),
            "{pieces:?}"
        );
    }

    #[test]
    fn blank_sections_give_no_chunks() {
        assert!(
            Splitter::new(100, 10)
                .split(DocKind::Text, &section("  \n\n "))
                .is_empty()
        );
    }
}
