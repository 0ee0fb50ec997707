//! Splitting sections into chunks: structure-aware for Markdown and HTML, Unicode-sentence
//! aware for everything else (so Chinese splits at 。！？ rather than mid-word).
//!
//! text-splitter re-reads the rest of its input for every chunk (the next sentence, the
//! levels still ahead), so one call over a long text is quadratic: a 1 MB line took a
//! minute. A section is therefore handed over in bounded stretches: blocks cut at blank
//! lines, and lines too long for a block walked in windows. A section within one block (any
//! ordinary page or heading section) is split in one call, exactly as before.

use std::ops::Range;

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

use super::clean::Fence;
use super::document::{DocKind, Section};

/// A piece of a section: byte offsets into the section text, and the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Blocks handed to text-splitter whole are about this many chunks long (in bytes of
/// `size`), so its per-chunk look-ahead stays bounded and splitting stays linear.
const BLOCK_CHUNKS: usize = 256;
/// A line longer than this many times `size` bytes is walked in windows rather than
/// handed over whole; ordinary paragraphs stay well below it.
const LONG_LINE_CHUNKS: usize = 32;
/// A window over a long line spans this many times `size` bytes: a chunk (at most `size`
/// characters, 4 bytes each) and the look-ahead deciding it fit in its first half.
const WINDOW_CHUNKS: usize = 16;

/// Cuts sections into chunks of at most `size` characters with `overlap` shared characters.
pub struct Splitter {
    text: TextSplitter<text_splitter::Characters>,
    markdown: MarkdownSplitter<text_splitter::Characters>,
    size: usize,
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
            size: size.max(1),
            signature: format!("split-{size}-{overlap}"),
        }
    }

    /// Identifies the chunking, so a settings change re-chunks unchanged files.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// Chunks of one section; never crosses the section (a PDF page stays whole).
    /// Time and memory are linear in the section's length.
    pub fn split(&self, kind: DocKind, section: &Section) -> Vec<Piece> {
        let text = section.text.as_str();
        let structured = matches!(kind, DocKind::Markdown | DocKind::Html | DocKind::Docx);
        let mut pieces = Vec::new();
        let stretches = stretches(
            text,
            structured,
            self.size.saturating_mul(BLOCK_CHUNKS),
            self.size.saturating_mul(LONG_LINE_CHUNKS),
        );
        for stretch in stretches {
            match stretch {
                Stretch::Block(range) => {
                    let base = range.start;
                    pieces.extend(
                        self.chunks(structured, &text[range])
                            .map(|(offset, chunk)| (base + offset, chunk)),
                    );
                }
                Stretch::LongLine(range) => {
                    self.split_long_line(structured, text, range, &mut pieces)
                }
            }
        }
        pieces
            .into_iter()
            .filter(|(_, chunk)| has_content(structured, chunk))
            .map(|(start, chunk)| Piece {
                start,
                end: start + chunk.len(),
                text: chunk.to_owned(),
            })
            .collect()
    }

    /// text-splitter's chunks of `text`, lazily, with byte offsets into it.
    fn chunks<'a>(
        &'a self,
        structured: bool,
        text: &'a str,
    ) -> Box<dyn Iterator<Item = (usize, &'a str)> + 'a> {
        if structured {
            Box::new(self.markdown.chunk_char_indices(text).map(to_pair))
        } else {
            Box::new(self.text.chunk_char_indices(text).map(to_pair))
        }
    }

    /// Splits `text[line]` window by window. Each window starts where text-splitter would
    /// start its next chunk, and only chunks ending in the window's first half are kept:
    /// their look-ahead lies inside the window, so they are the chunks a single call would
    /// give, at a cost per window bounded by its size.
    fn split_long_line<'a>(
        &self,
        structured: bool,
        text: &'a str,
        line: Range<usize>,
        out: &mut Vec<(usize, &'a str)>,
    ) {
        let window = self.size.saturating_mul(WINDOW_CHUNKS);
        let mut cursor = line.start;
        while cursor < line.end {
            let end = text.floor_char_boundary(cursor.saturating_add(window).min(line.end));
            // A window always holds a whole character, so every round moves on.
            let end = if end <= cursor {
                text.ceil_char_boundary(cursor + 1)
            } else {
                end
            };
            let last = end == line.end;
            let keep_until = cursor + (end - cursor) / 2;
            let mut next = None;
            let mut kept_any = false;
            for (offset, chunk) in self.chunks(structured, &text[cursor..end]) {
                let start = cursor + offset;
                if last || !kept_any || start + chunk.len() <= keep_until {
                    out.push((start, &text[start..start + chunk.len()]));
                    kept_any = true;
                } else {
                    next = Some(start);
                    break;
                }
            }
            // Without a chunk left to start from, only blank text remains in this window.
            cursor = match next {
                Some(start) if start > cursor => start,
                _ => end,
            };
        }
    }
}

/// A stretch of a section that text-splitter gets in one call.
#[derive(Debug, PartialEq)]
enum Stretch {
    /// Whole lines, about `block_bytes` long at most, cut at a blank line where possible.
    Block(Range<usize>),
    /// One line longer than `long_line_bytes`, with its line break.
    LongLine(Range<usize>),
}

/// Cuts `text` into stretches in one pass. Cuts fall at line starts, after a blank line
/// where there is one, and outside Markdown code fences where there is a choice.
fn stretches(text: &str, fenced: bool, block_bytes: usize, long_line_bytes: usize) -> Vec<Stretch> {
    let mut out = Vec::new();
    let mut block_start = 0;
    // The latest line starts in this block that a cut may use: after a blank line, and after
    // any line, both outside code fences.
    let mut after_blank: Option<usize> = None;
    let mut after_line: Option<usize> = None;
    let mut fence: Option<Fence> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let body = line.strip_suffix('\n').unwrap_or(line);
        if body.len() > long_line_bytes {
            if block_start < start {
                out.push(Stretch::Block(block_start..start));
            }
            out.push(Stretch::LongLine(start..pos));
            (block_start, after_blank, after_line) = (pos, None, None);
            continue;
        }
        if fenced {
            fence = match fence {
                Some(open) if open.is_closed_by(body) => None,
                Some(open) => Some(open),
                None => Fence::open(body),
            };
        }
        if fence.is_none() {
            after_line = Some(pos);
            if body.trim().is_empty() {
                after_blank = Some(pos);
            }
        }
        if pos - block_start >= block_bytes {
            // A blank line early in the block would leave most of it to the next one.
            let late_blank = after_blank.filter(|&at| at - block_start >= block_bytes / 2);
            let cut = late_blank.or(after_line).unwrap_or(pos);
            out.push(Stretch::Block(block_start..cut));
            block_start = cut;
            after_blank = None;
            after_line = (pos > cut).then_some(pos).filter(|_| fence.is_none());
        }
    }
    if block_start < text.len() {
        out.push(Stretch::Block(block_start..text.len()));
    }
    out
}

/// False for blank pieces and for a Markdown heading alone: the heading path already
/// travels with every chunk of its section, so such a chunk would only crowd results.
/// In plain text, and for "#hashtag", a leading '#' is text and is kept.
fn has_content(structured: bool, chunk: &str) -> bool {
    let trimmed = chunk.trim();
    let lone_heading = structured && !trimmed.contains('\n') && is_atx_heading(trimmed);
    !trimmed.is_empty() && !lone_heading
}

/// One to six '#' followed by a space, a tab or nothing: a Markdown (ATX) heading line.
fn is_atx_heading(line: &str) -> bool {
    let hashes = line.bytes().take_while(|b| *b == b'#').count();
    (1..=6).contains(&hashes) && matches!(line.as_bytes().get(hashes), None | Some(b' ' | b'\t'))
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

    /// Chunks as the splitter gave them before it cut sections into stretches: one
    /// text-splitter call over the whole section.
    fn split_in_one_call(splitter: &Splitter, kind: DocKind, text: &str) -> Vec<(usize, String)> {
        let structured = matches!(kind, DocKind::Markdown | DocKind::Html | DocKind::Docx);
        splitter
            .chunks(structured, text)
            .filter(|(_, chunk)| has_content(structured, chunk))
            .map(|(start, chunk)| (start, chunk.to_owned()))
            .collect()
    }

    fn pairs(pieces: Vec<Piece>) -> Vec<(usize, String)> {
        pieces.into_iter().map(|p| (p.start, p.text)).collect()
    }

    /// The sections of the repository's fixtures, with their kinds.
    fn fixture_sections() -> Vec<(DocKind, Section)> {
        use crate::ingest::load::load_bytes;
        let mut out = Vec::new();
        for (name, kind) in [
            ("prompt_guidelines.md", DocKind::Markdown),
            ("cjk_book.pdf", DocKind::Pdf),
            ("lecture.srt", DocKind::Subtitles),
            ("lecture.vtt", DocKind::Subtitles),
        ] {
            let bytes = std::fs::read(lore_testkit::fixture(name)).unwrap();
            let doc = load_bytes(name, kind, &bytes).unwrap();
            out.extend(doc.sections.into_iter().map(|s| (kind, s)));
        }
        out
    }

    #[test]
    fn fixtures_split_as_they_did_in_one_call() {
        for (kind, section) in fixture_sections() {
            for (size, overlap) in [(150, 15), (50, 0), (400, 40)] {
                let splitter = Splitter::new(size, overlap);
                assert_eq!(
                    pairs(splitter.split(kind, &section)),
                    split_in_one_call(&splitter, kind, &section.text),
                    "{kind:?} at {size}/{overlap}: {}",
                    section.text
                );
            }
        }
    }

    #[test]
    fn a_long_line_walked_in_windows_splits_as_in_one_call() {
        // Fixture prose run into single lines of 20-60 KB, plus lines without any sentence
        // end: each is walked in windows, and the chunks are those of a single call.
        let prose: String = fixture_sections()
            .iter()
            .map(|(_, s)| s.text.replace('\n', " "))
            .collect::<Vec<_>>()
            .join(" ");
        let lines = [
            prose.repeat(3),
            "机器学习是人工智能的一个分支".repeat(1500),
            "lore keeps every word ".repeat(1500),
            "Machine learning studies how computers learn from data. 机器学习，研究数据。"
                .repeat(400),
        ];
        for line in &lines {
            assert!(line.len() > 150 * LONG_LINE_CHUNKS, "{} bytes", line.len());
            for (size, overlap) in [(150, 15), (100, 0)] {
                let splitter = Splitter::new(size, overlap);
                let got = pairs(splitter.split(DocKind::Text, &section(line)));
                let want = split_in_one_call(&splitter, DocKind::Text, line);
                assert_eq!(got.len(), want.len(), "{size}/{overlap}");
                assert_eq!(got, want, "{size}/{overlap}");
            }
        }
    }

    #[test]
    fn a_section_is_cut_at_blank_lines_into_bounded_blocks() {
        let paragraph = "A short paragraph of prose.\n".repeat(4) + "\n";
        let text = paragraph.repeat(400);
        let got = stretches(&text, true, 1000, 500);
        assert!(got.len() > 10, "{got:?}");
        let mut expected_start = 0;
        for stretch in &got {
            let Stretch::Block(range) = stretch else {
                panic!("no line is long: {stretch:?}")
            };
            assert_eq!(range.start, expected_start);
            assert!(range.len() <= 1000 + paragraph.len(), "{range:?}");
            // Every cut but the end falls after a blank line.
            assert!(text[..range.end].ends_with("\n\n"), "{range:?}");
            expected_start = range.end;
        }
        assert_eq!(expected_start, text.len());
    }

    #[test]
    fn blocks_are_not_cut_inside_a_code_fence_when_there_is_a_choice() {
        let fence = format!("```\n{}```\n", "let x = 1;\n\n".repeat(6));
        let text = "prose line\n".repeat(9) + &fence + &"after\n".repeat(40);
        let inside = text.find("```").unwrap() + 1..text.rfind("```").unwrap();
        let got = stretches(&text, true, 120, 500);
        assert!(got.len() > 2, "{got:?}");
        for stretch in &got {
            let Stretch::Block(range) = stretch else {
                panic!("{stretch:?}")
            };
            assert!(!inside.contains(&range.start), "{range:?} in {inside:?}");
        }
        // Plain text has no fences, so the same text is cut by size alone.
        let plain = stretches(&text, false, 120, 500);
        assert!(
            plain
                .iter()
                .any(|s| matches!(s, Stretch::Block(r) if inside.contains(&r.start)))
        );
    }

    #[test]
    fn a_leading_hash_is_text_outside_markdown() {
        let text = "#lore #rust notes";
        let plain = Splitter::new(60, 0).split(DocKind::Text, &section(text));
        assert_eq!(plain.len(), 1);
        let markdown = Splitter::new(60, 0).split(DocKind::Markdown, &section("# 标题"));
        assert!(markdown.is_empty());
        let tag = Splitter::new(60, 0).split(DocKind::Markdown, &section(text));
        assert_eq!(tag.len(), 1, "a hashtag is not a heading");
    }

    /// Splitting time for single lines of 1 and 10 MB, printed (not asserted: the machine
    /// may be busy). `cargo test --release -p lore-core split_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "timing print, run by hand"]
    fn split_timing() {
        let splitter = Splitter::new(150, 15);
        for (name, unit) in [
            ("words", "lore keeps every word "),
            ("chinese", "机器学习是人工智能的一个分支"),
        ] {
            for mib in [1, 10] {
                let line = unit.repeat(mib * 1024 * 1024 / unit.len());
                for kind in [DocKind::Text, DocKind::Markdown] {
                    let start = std::time::Instant::now();
                    let pieces = splitter.split(kind, &section(&line));
                    eprintln!(
                        "{mib} MB single line of {name}, {kind:?}: {} chunks in {:?}",
                        pieces.len(),
                        start.elapsed()
                    );
                }
            }
            let line = unit.repeat(1024 * 1024 / unit.len());
            let start = std::time::Instant::now();
            let before = split_in_one_call(&splitter, DocKind::Text, &line);
            eprintln!(
                "1 MB single line of {name}, in one call (before): {} chunks in {:?}",
                before.len(),
                start.elapsed()
            );
        }
    }

    /// Text from pieces that exercise every path: sentence ends, CJK, Markdown marks,
    /// blank lines, and (in the second arm) lines long enough to be walked in windows.
    fn splitter_input() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![
            4 => "[a-z]{1,9}",
            2 => Just(" ".to_string()),
            2 => "[机器学习数据模型的是]{1,6}",
            1 => Just("。".to_string()),
            1 => Just(". ".to_string()),
            1 => Just("\n".to_string()),
            1 => Just("\n\n".to_string()),
            1 => Just("\n# ".to_string()),
            1 => Just("\n```\n".to_string()),
            1 => Just("**".to_string()),
            1 => Just("\n- ".to_string()),
        ];
        let long_line_token = prop_oneof![
            4 => "[a-z]{1,9}",
            3 => Just(" ".to_string()),
            3 => "[机器学习数据模型的是]{1,6}",
            1 => Just("，".to_string()),
        ];
        prop_oneof![
            prop::collection::vec(token, 0..1500).prop_map(|t| t.concat()),
            prop::collection::vec(long_line_token, 500..2500).prop_map(|t| t.concat()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 96,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Every piece is a slice of its section within the size, and whatever no piece
        /// covers is blank (or, in Markdown, a heading line, which travels as the path).
        #[test]
        fn the_splitter_loses_no_text(
            text in splitter_input(),
            size in 50usize..200,
            overlap_part in 0usize..4,
            structured in proptest::prelude::any::<bool>(),
        ) {
            let kind = if structured { DocKind::Markdown } else { DocKind::Text };
            let overlap = size * overlap_part / 10;
            let pieces = Splitter::new(size, overlap).split(kind, &section(&text));
            let mut covered = vec![false; text.len()];
            for p in &pieces {
                proptest::prop_assert_eq!(&text[p.start..p.end], p.text.as_str());
                proptest::prop_assert!(p.text.chars().count() <= size, "{} chars", p.text.chars().count());
                covered[p.start..p.end].iter_mut().for_each(|c| *c = true);
            }
            let mut at = 0;
            while at < text.len() {
                if covered[at] {
                    at += 1;
                    continue;
                }
                let end = (at..text.len()).find(|&i| covered[i]).unwrap_or(text.len());
                let gap = &text[at..end];
                for line in gap.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    proptest::prop_assert!(
                        structured && line.starts_with('#'),
                        "lost {line:?} of {text:?}"
                    );
                }
                at = end;
            }
        }
    }
}
