//! The house keeps its layers: no import cycles between the modules of either library
//! (`core/src`, `src`; test modules aside), the core links no command line, HTTP server or chat
//! platform, and no product file grows past 600 lines.
//! Imports are read from the source text (`crate::…` and `super::…` paths, use-trees
//! included), so the check needs no build of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside one crate: `["store", "embedded"]`; the crate root is empty.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines: `store/embedded.rs` and `store/embedded/mod.rs` are `store::embedded`.
fn module_of(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The text with comments, string and char literals blanked, so only code is read.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('#') | Some('"')) && !prev_is_ident(&chars, i) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push(' ');
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' && is_char_literal(&chars, i) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `'a'`, `'\n'` and `'\u{..}'` are literals; `'a` (a lifetime) is not.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// The code before its test module (`#[cfg(test)] mod ...`, which lore keeps last).
fn without_tests(code: &str) -> String {
    let compact: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    match compact.find("#[cfg(test)] mod ") {
        Some(at) => compact[..at].to_owned(),
        None => compact,
    }
}

/// Every path that starts at `crate::` or `super::` in the code, expanded over use-trees,
/// resolved against `here` (the module the file defines).
fn referenced_paths(code: &str, here: &ModPath) -> Vec<ModPath> {
    let tokens = tokenize(code);
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        let start = match tokens[i].as_str() {
            "crate" => Vec::new(),
            "super" => {
                // `super` of `a::b` written in a::b is `a`; a mod.rs file is its module.
                let mut base = here.clone();
                base.pop();
                base
            }
            _ => continue,
        };
        if i > 0 && (tokens[i - 1] == "::" || tokens[i - 1] == "super") {
            continue;
        }
        if tokens.get(i + 1).map(String::as_str) != Some("::") {
            continue;
        }
        let mut j = i + 2;
        let mut base = start;
        // Further `super::` steps.
        while tokens.get(j).map(String::as_str) == Some("super")
            && tokens.get(j + 1).map(String::as_str) == Some("::")
        {
            base.pop();
            j += 2;
        }
        use_tree(&tokens, &mut j, base, &mut out);
    }
    out
}

fn use_tree(tokens: &[String], j: &mut usize, prefix: ModPath, out: &mut Vec<ModPath>) {
    match tokens.get(*j).map(String::as_str) {
        Some("{") => {
            *j += 1;
            loop {
                match tokens.get(*j).map(String::as_str) {
                    None => return,
                    Some("}") => {
                        *j += 1;
                        return;
                    }
                    Some(",") => *j += 1,
                    _ => use_tree(tokens, j, prefix.clone(), out),
                }
            }
        }
        Some(t) if is_ident(t) => {
            let mut path = prefix;
            path.push(t.to_owned());
            *j += 1;
            if tokens.get(*j).map(String::as_str) == Some("::") {
                *j += 1;
                use_tree(tokens, j, path, out);
            } else {
                out.push(path);
            }
        }
        _ => out.push(prefix),
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// The file-level module graph of one crate: module → modules it names.
fn module_graph(root: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    // Test-only files (a `tests` folder, `tests.rs`, `testdata.rs`) are not the library.
    files.retain(|f| {
        !f.iter().any(|p| p == "tests")
            && !f
                .file_name()
                .is_some_and(|n| n == "tests.rs" || n == "testdata.rs")
    });
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(root, f)).collect();
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        let here = module_of(root, file);
        let code = without_tests(&code_only(&std::fs::read_to_string(file).unwrap()));
        let entry = graph.entry(here.clone()).or_default();
        for path in referenced_paths(&code, &here) {
            // The longest prefix that is a file of this crate is the module depended on.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p))
                .unwrap_or_default();
            if target != here {
                entry.insert(target);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        next: usize,
        found: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(n: &N, g: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        s.index.insert(n.clone(), s.next);
        s.low.insert(n.clone(), s.next);
        s.next += 1;
        s.stack.push(n.clone());
        s.on_stack.insert(n.clone());
        for m in g.get(n).into_iter().flatten() {
            if !s.index.contains_key(m) {
                visit(m, g, s);
                let low = s.low[n].min(s.low[m]);
                s.low.insert(n.clone(), low);
            } else if s.on_stack.contains(m) {
                let low = s.low[n].min(s.index[m]);
                s.low.insert(n.clone(), low);
            }
        }
        if s.low[n] == s.index[n] {
            let mut component = Vec::new();
            while let Some(m) = s.stack.pop() {
                s.on_stack.remove(&m);
                let done = &m == n;
                component.push(m);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for n in graph.keys() {
        if !state.index.contains_key(n) {
            visit(n, graph, &mut state);
        }
    }
    state.found
}

fn is_ancestor(a: &ModPath, b: &ModPath) -> bool {
    a.len() < b.len() && b[..a.len()] == a[..]
}

/// The cycles of one crate: between its top-level modules, and between files inside one of
/// them that are not one another's parent (a `mod.rs` re-exporting its children is not a
/// cycle).
fn crate_cycles(root: &Path) -> Vec<String> {
    let graph = module_graph(root);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (from, targets) in &graph {
        for to in targets {
            if let (Some(a), Some(b)) = (from.first(), to.first())
                && a != b
            {
                top.entry(a.clone()).or_default().insert(b.clone());
            }
            // Within one top-level module (cycles across them are reported above).
            if from.first() == to.first() && !is_ancestor(from, to) && !is_ancestor(to, from) {
                files.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    let mut found: Vec<String> = cycles(&top)
        .into_iter()
        .map(|c| format!("modules {}", c.join(" ↔ ")))
        .collect();
    found.extend(cycles(&files).into_iter().map(|c| {
        let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
        format!("files {}", names.join(" ↔ "))
    }));
    found
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_core_has_no_import_cycles() {
    let found = crate_cycles(&repo().join("core/src"));
    assert!(found.is_empty(), "import cycles in core/src: {found:#?}");
}

#[test]
fn the_application_has_no_import_cycles() {
    let found = crate_cycles(&repo().join("src"));
    assert!(found.is_empty(), "import cycles in src: {found:#?}");
}

/// The checker itself sees a cycle through a use-tree and through `super::`.
#[test]
fn the_checker_finds_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("eval")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod eval;\n",
    )
    .unwrap();
    std::fs::write(src.join("a.rs"), "use crate::{b::{Thing, other}, x};\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "// use crate::a;\nfn f() { crate::a::g(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("eval/mod.rs"), "mod answers;\nmod retrieval;\n").unwrap();
    std::fs::write(
        src.join("eval/answers.rs"),
        "use super::retrieval::Index;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("eval/retrieval.rs"),
        "pub struct Index(super::answers::Report);\nconst S: &str = \"crate::a\";\n",
    )
    .unwrap();
    let found = crate_cycles(src);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|c| c.contains("a ↔ b") || c.contains("b ↔ a"))
    );
    assert!(found.iter().any(|c| c.contains("eval::answers")));
    std::fs::write(src.join("b.rs"), "fn f() {}\n").unwrap();
    std::fs::write(src.join("eval/retrieval.rs"), "pub struct Index;\n").unwrap();
    assert!(crate_cycles(src).is_empty());
}

/// The core knows no command line, no HTTP server and no chat platform.
#[test]
fn the_core_links_no_surface() {
    let manifest = std::fs::read_to_string(repo().join("core/Cargo.toml")).unwrap();
    let table: toml::Table = manifest.parse().unwrap();
    let deps = table["dependencies"].as_table().unwrap();
    for forbidden in [
        "lore-discord",
        "lore-telegram",
        "serenity",
        "teloxide",
        "clap",
        "indicatif",
        "axum",
        "hyper",
        "config",
    ] {
        assert!(
            !deps.contains_key(forbidden),
            "core/Cargo.toml depends on {forbidden}"
        );
    }
}

/// Product files stay small enough to read as one job: lines before the test module, and
/// files that are only tests (`tests.rs`, `tests/` folders) aside.
const MAX_PRODUCT_LINES: usize = 600;

fn product_lines(text: &str) -> usize {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .count()
}

#[test]
fn no_product_file_is_over_600_lines() {
    let mut files = Vec::new();
    for dir in ["src", "core/src", "adapters"] {
        rust_files(&repo().join(dir), &mut files);
    }
    let too_long: Vec<String> = files
        .iter()
        .filter(|f| {
            let tests_only = f.file_name().is_some_and(|n| n == "tests.rs")
                || f.components().any(|c| c.as_os_str() == "tests");
            !tests_only
        })
        .filter_map(|f| {
            let lines = product_lines(&std::fs::read_to_string(f).unwrap());
            (lines > MAX_PRODUCT_LINES).then(|| format!("{}: {lines}", f.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "files over {MAX_PRODUCT_LINES} lines: {too_long:#?}"
    );
}

#[test]
fn the_line_count_stops_at_the_test_module() {
    let text = "fn a() {}\n\n#[cfg(test)]\nmod tests {\n    fn b() {}\n}\n";
    assert_eq!(product_lines(text), 2);
    assert_eq!(product_lines("fn a() {}\n"), 1);
}
