//! The words of a question worth matching lexically. Questions in the wild wrap their
//! subject in instructions ("请根据提供的上下文信息，解释……并说明……", "Based on the context,
//! explain ..."). Those words say what to do, not what to find, and BM25 weighs them like
//! any other: rare in a book, they even weigh more. They are cut before BM25 sees the
//! question; the dense side reads the question whole.

/// Instruction phrases, longest first within a family so the longest one is cut.
const CHINESE_PHRASES: &[&str] = &[
    // where to look
    "请根据以下提供的上下文信息",
    "根据以下提供的上下文信息",
    "请根据所提供的上下文信息",
    "根据所提供的上下文信息",
    "根据上述提供的上下文信息",
    "请根据提供的上下文信息",
    "根据提供的上下文信息",
    "请根据给定的上下文信息",
    "根据给定的上下文信息",
    "根据上下文信息",
    "请根据以下原文内容",
    "根据以下原文内容",
    "请根据原文内容",
    "根据原文内容",
    "根据给定的文本",
    "在给定的文本中",
    "根据上文",
    "根据文中",
    "根据以上内容",
    "根据以下内容",
    "根据上述内容",
    // what to do
    "请详细描述",
    "请详细解释",
    "请详细说明",
    "并详细描述",
    "并详细解释",
    "并详细说明",
    "请简要说明",
    "请简要解释",
    "请简述",
    "请解释",
    "请说明",
    "请描述",
    "请阐述",
    "请推导出",
    "请推导",
    "请证明",
    "请给出",
    "请分析",
    "请列举",
    "请计算",
    "并解释",
    "并说明",
    "并阐述",
    "并简述",
    "并描述",
    "并给出",
    "并推导出",
    "并分析",
    "并举例说明",
];

/// English instruction phrases, matched case-insensitively as whole words.
const ENGLISH_PHRASES: &[&str] = &[
    "based on the provided context",
    "based on the given context",
    "based on the context",
    "according to the provided context",
    "according to the given context",
    "according to the context",
    "according to the text",
    "in the given text",
    "please explain",
    "please describe",
    "please",
    "explain",
    "describe",
];

/// The question without its instruction phrases, for the lexical side. Returns the
/// question unchanged when cutting would leave nothing to match.
pub fn lexical_words(question: &str) -> String {
    let mut text = question.to_owned();
    for phrase in CHINESE_PHRASES {
        if text.contains(phrase) {
            text = text.replace(phrase, " ");
        }
    }
    let text = cut_english(&text);
    if text.chars().any(char::is_alphanumeric) {
        text
    } else {
        question.to_owned()
    }
}

/// Removes the English phrases where they stand as whole words.
fn cut_english(text: &str) -> String {
    let mut out = text.to_owned();
    for phrase in ENGLISH_PHRASES {
        let mut from = 0;
        while let Some(at) = find_ascii_ci(&out[from..], phrase).map(|i| i + from) {
            let end = at + phrase.len();
            let before = out[..at].chars().next_back();
            let after = out[end..].chars().next();
            let word_edge = |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric());
            if word_edge(before) && word_edge(after) {
                out.replace_range(at..end, " ");
                from = at + 1;
            } else {
                from = end;
            }
            if from >= out.len() {
                break;
            }
        }
    }
    out
}

/// Byte offset of `needle` (ASCII) in `haystack`, ignoring ASCII case.
fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len())
        .find(|&i| haystack.is_char_boundary(i) && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_cut_and_the_subject_kept() {
        let q = "请根据提供的上下文信息，解释“算法”和“模型”的概念，并说明它们在机器学习中的关系。";
        let words = lexical_words(q);
        assert!(!words.contains("上下文"), "{words}");
        assert!(!words.contains("并说明"), "{words}");
        assert!(words.contains("“算法”和“模型”的概念"), "{words}");
        assert!(words.contains("机器学习"), "{words}");
    }

    #[test]
    fn english_instructions_are_cut_as_whole_words_only() {
        let words = lexical_words("Based on the context, please explain the kernel trick.");
        let lower = words.to_lowercase();
        for cut in ["context", "please", "explain", "based"] {
            assert!(!lower.contains(cut), "{words}");
        }
        assert!(words.contains("the kernel trick"), "{words}");
        // "explained" is a word of its own, not the instruction.
        assert!(lexical_words("variance explained by PCA").contains("explained"));
    }

    #[test]
    fn a_question_that_is_only_instructions_is_kept_whole() {
        assert_eq!(lexical_words("请解释"), "请解释");
        assert_eq!(lexical_words("Please explain."), "Please explain.");
    }

    #[test]
    fn short_questions_are_untouched() {
        let q = "范廷颂是什么时候被任为主教的？";
        assert_eq!(lexical_words(q), q);
    }
}
