//! Citation checking on streamed text: every `[n]` the model writes is checked against the
//! sources it was given, and an invalid one is dropped before anyone sees it.

use std::collections::BTreeSet;

/// Longest marker held back while deciding whether it is a citation: `[` + 3 digits + `]`.
const MAX_MARKER: usize = 5;

/// Filters a stream of text pieces. Text is passed through except `[n]` markers with `n`
/// outside `1..=sources`; a possible marker is held until it is complete or ruled out.
pub struct CitationFilter {
    sources: usize,
    pending: String,
    cited: BTreeSet<usize>,
}

impl CitationFilter {
    pub fn new(sources: usize) -> Self {
        Self {
            sources,
            pending: String::new(),
            cited: BTreeSet::new(),
        }
    }

    /// Feeds a piece; returns the text that is safe to show now.
    pub fn push(&mut self, piece: &str) -> String {
        let mut out = String::new();
        for ch in piece.chars() {
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
    fn brackets_that_are_not_citations_pass_through() {
        let (text, _) = filter_citations("arr[i] = x[12345]; list[]; [a, b]", 3);
        assert_eq!(text, "arr[i] = x[12345]; list[]; [a, b]");
        let (text, _) = filter_citations("unterminated [2", 3);
        assert_eq!(text, "unterminated [2");
    }
}
