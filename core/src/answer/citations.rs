//! Citation checking on streamed text: every `[n]` the model writes is checked against the
//! sources it was given, and an invalid one is dropped before anyone sees it. Inside
//! Markdown code (fenced blocks and inline spans) brackets are code, `x[0]`, and pass
//! untouched.

use std::collections::BTreeSet;

/// Longest marker held back while deciding whether it is a citation: `[` + 3 digits + `]`.
const MAX_MARKER: usize = 5;

/// Filters a stream of text pieces. Text is passed through except `[n]` markers with `n`
/// outside `1..=sources`; a possible marker is held until it is complete or ruled out.
pub struct CitationFilter {
    sources: usize,
    pending: String,
    cited: BTreeSet<usize>,
    code: CodeTracker,
}

/// Where a stream stands in Markdown code, fed one character at a time.
#[derive(Default)]
struct CodeTracker {
    /// Only spaces or tabs so far on this line.
    line_start: bool,
    /// Backticks in the run being read, and whether it began at a line start.
    ticks: usize,
    ticks_at_line_start: bool,
    /// Inside a ``` fence, and the length of the inline span's opening run when in one.
    fenced: bool,
    inline: Option<usize>,
}

impl CodeTracker {
    fn new() -> Self {
        Self {
            line_start: true,
            ..Self::default()
        }
    }

    /// Takes `ch` into account; returns whether `ch` is code (or a code delimiter).
    fn step(&mut self, ch: char) -> bool {
        if ch == '`' {
            if self.ticks == 0 {
                self.ticks_at_line_start = self.line_start;
            }
            self.ticks += 1;
            self.line_start = false;
            return true;
        }
        self.end_run();
        let in_code = self.fenced || self.inline.is_some();
        match ch {
            '\n' => {
                // A blank line ends a paragraph, and no code span crosses one.
                if self.line_start {
                    self.inline = None;
                }
                self.line_start = true;
            }
            ' ' | '\t' => {}
            _ => self.line_start = false,
        }
        in_code
    }

    /// A finished run of backticks opens or closes a fence (three or more at a line start)
    /// or an inline span (closed by a run of the same length).
    fn end_run(&mut self) {
        let run = std::mem::take(&mut self.ticks);
        if run == 0 {
            return;
        }
        if run >= 3 && self.ticks_at_line_start && self.inline.is_none() {
            self.fenced = !self.fenced;
        } else if !self.fenced {
            self.inline = match self.inline {
                None => Some(run),
                Some(open) if open == run => None,
                still_open => still_open,
            };
        }
    }
}

impl CitationFilter {
    pub fn new(sources: usize) -> Self {
        Self {
            sources,
            pending: String::new(),
            cited: BTreeSet::new(),
            code: CodeTracker::new(),
        }
    }

    /// Feeds a piece; returns the text that is safe to show now.
    pub fn push(&mut self, piece: &str) -> String {
        let mut out = String::new();
        for ch in piece.chars() {
            if self.code.step(ch) {
                // Code, or a backtick that may open it: a marker held so far was not one.
                out.push_str(&std::mem::take(&mut self.pending));
                out.push(ch);
                continue;
            }
            if self.pending.is_empty() {
                if ch == '[' {
                    self.pending.push(ch);
                } else {
                    out.push(ch);
                }
                continue;
            }
            self.pending.push(ch);
            if ch == ']' {
                self.resolve_marker(&mut out);
            } else if !ch.is_ascii_digit() || self.pending.len() > MAX_MARKER {
                // Not a citation after all ("[see", "[1234"): release it, but a new '['
                // may start the next marker.
                let mut held = std::mem::take(&mut self.pending);
                if held.ends_with('[') {
                    held.pop();
                    self.pending.push('[');
                }
                out.push_str(&held);
            }
        }
        out
    }

    /// Ends the stream: releases anything held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Source numbers the text cited validly, in order.
    pub fn cited(&self) -> Vec<usize> {
        self.cited.iter().copied().collect()
    }

    fn resolve_marker(&mut self, out: &mut String) {
        let marker = std::mem::take(&mut self.pending);
        let digits = &marker[1..marker.len() - 1];
        match digits.parse::<usize>() {
            Ok(n) if (1..=self.sources).contains(&n) => {
                self.cited.insert(n);
                out.push_str(&marker);
            }
            // "[]" is not a citation; keep it as written.
            Err(_) if digits.is_empty() => out.push_str(&marker),
            _ => {
                tracing::debug!(marker = %marker, "dropped a citation to a source that was not given")
            }
        }
    }
}

/// Filters a whole text at once.
pub fn filter_citations(text: &str, sources: usize) -> (String, Vec<usize>) {
    let mut filter = CitationFilter::new(sources);
    let mut out = filter.push(text);
    out.push_str(&filter.finish());
    (out, filter.cited())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_citations_stay_and_invalid_ones_go() {
        let (text, cited) = filter_citations("SVM maximises the margin [1][7]. Kernels [2].", 2);
        assert_eq!(text, "SVM maximises the margin [1]. Kernels [2].");
        assert_eq!(cited, [1, 2]);
        let (text, cited) = filter_citations("见资料 [0] 与 [3]。", 2);
        assert_eq!(text, "见资料  与 。");
        assert!(cited.is_empty());
    }

    #[test]
    fn markers_split_across_stream_pieces_are_judged_whole() {
        let mut f = CitationFilter::new(3);
        let mut shown = String::new();
        for piece in ["Answer [", "1", "] and [", "9", "", "] end [x] ", "[[2]"] {
            shown.push_str(&f.push(piece));
        }
        shown.push_str(&f.finish());
        assert_eq!(shown, "Answer [1] and  end [x] [[2]");
        assert_eq!(f.cited(), [1, 2]);
    }

    #[test]
    fn brackets_in_code_are_code() {
        let text = "Index from zero: `x[0]`, and [9] is no source [1].\n\n```python\nrow = grid[3][0]\n```\nSee [2] and [5].";
        let (shown, cited) = filter_citations(text, 2);
        assert_eq!(
            shown,
            "Index from zero: `x[0]`, and  is no source [1].\n\n```python\nrow = grid[3][0]\n```\nSee [2] and ."
        );
        assert_eq!(cited, [1, 2]);
        // Split across pieces, a double-backtick span holding a backtick, a tilde-free fence
        // indented in a list.
        let mut f = CitationFilter::new(1);
        let mut shown = String::new();
        for piece in [
            "``a`[",
            "0]`` [",
            "7] - item\n  ``",
            "`\n  v[3]\n  ```\n[1]",
        ] {
            shown.push_str(&f.push(piece));
        }
        shown.push_str(&f.finish());
        assert_eq!(shown, "``a`[0]``  - item\n  ```\n  v[3]\n  ```\n[1]");
        assert_eq!(f.cited(), [1]);
    }

    #[test]
    fn a_stray_backtick_stops_mattering_at_the_paragraphs_end() {
        let (shown, _) = filter_citations("It costs 5` dollars [4].\n\nThen [4] again.", 1);
        assert_eq!(shown, "It costs 5` dollars [4].\n\nThen  again.");
    }

    #[test]
    fn brackets_that_are_not_citations_pass_through() {
        let (text, _) = filter_citations("arr[i] = x[12345]; list[]; [a, b]", 3);
        assert_eq!(text, "arr[i] = x[12345]; list[]; [a, b]");
        let (text, _) = filter_citations("unterminated [2", 3);
        assert_eq!(text, "unterminated [2");
    }

    /// Text rich in what the filter looks at: brackets, digits, backticks, fences.
    fn citation_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![
            3 => "[a-z ]{1,6}",
            2 => (0u32..1200).prop_map(|n| format!("[{n}]")),
            1 => Just("[".to_string()),
            1 => Just("]".to_string()),
            1 => "[0-9]{1,5}",
            1 => Just("`".to_string()),
            1 => Just("\n```\n".to_string()),
            1 => Just("\n".to_string()),
            1 => Just("[]".to_string()),
            1 => "[机器学习]{1,3}",
        ];
        prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Streaming in any cuts gives what the whole text gives; the filter only removes
        /// characters; every citation it reports was given.
        #[test]
        fn streaming_equals_whole_and_only_removes(
            text in citation_text(),
            sources in 0usize..6,
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let (whole, cited) = filter_citations(&text, sources);
            let chars: Vec<char> = text.chars().collect();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
            bounds.sort_unstable();
            let mut filter = CitationFilter::new(sources);
            let mut streamed = String::new();
            let mut from = 0;
            for to in bounds.into_iter().chain([chars.len()]) {
                let piece: String = chars[from..to].iter().collect();
                streamed.push_str(&filter.push(&piece));
                from = to;
            }
            streamed.push_str(&filter.finish());
            proptest::prop_assert_eq!(&streamed, &whole);
            proptest::prop_assert_eq!(filter.cited(), cited.clone());
            proptest::prop_assert!(cited.iter().all(|n| (1..=sources).contains(n)));
            // The output is the input with some characters taken out.
            let mut rest = text.chars();
            for c in whole.chars() {
                proptest::prop_assert!(rest.any(|r| r == c), "{whole:?} is not within {text:?}");
            }
            if !text.contains('[') {
                proptest::prop_assert_eq!(&whole, &text);
            }
        }
    }
}
