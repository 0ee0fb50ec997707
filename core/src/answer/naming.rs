//! What a source is called where people read it. Files are stored under their path
//! relative to the folder they were ingested from, URLs and chat posts under their link;
//! stores written before that hold absolute server paths, which are shortened here, at read
//! time, so no reply shows where the server keeps its files. `[answer.source_links]` turns
//! a name into a link people can click (a wiki or git host holding the same files).

use std::collections::BTreeMap;

use crate::store::{KnowledgeStore, StoreError, TenantScope};

/// How many trailing path components name a source stored under an absolute path.
const LEGACY_COMPONENTS: usize = 2;

/// The name shown for a stored source name: URLs and relative names as they are, an
/// absolute path (from an older lore) cut to its last two components.
pub fn display_name(source: &str) -> String {
    if source.contains("://") || !is_absolute_path(source) {
        return source.to_owned();
    }
    let parts: Vec<&str> = source
        .split(['/', '\\'])
        .filter(|p| !p.is_empty())
        .collect();
    let keep = parts.len().saturating_sub(LEGACY_COMPONENTS);
    parts[keep..].join("/")
}

/// The stored name of `tenant`'s source called `name`: the name itself when stored so, else
/// the one source an older lore stored under an absolute path whose shown name is `name`.
pub async fn resolve_source(
    store: &dyn KnowledgeStore,
    tenant: &str,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let sources = store.sources(&TenantScope::only(tenant)).await?;
    if sources.iter().any(|s| s.source == name) {
        return Ok(Some(name.to_owned()));
    }
    let mut shown = sources
        .into_iter()
        .filter(|s| display_name(&s.source) == name);
    match (shown.next(), shown.next()) {
        (Some(only), None) => Ok(Some(only.source)),
        _ => Ok(None),
    }
}

/// `/x`, `\\server\x`, `C:\x` or `C:/x`.
fn is_absolute_path(name: &str) -> bool {
    let b = name.as_bytes();
    name.starts_with('/')
        || name.starts_with('\\')
        || (b.len() > 2
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'/' | b'\\'))
}

/// `[answer.source_links]`: name prefixes and the URLs they are published under, e.g.
/// `"handbook/" = "https://git.example.com/team/handbook/blob/main/"`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceLinks(BTreeMap<String, String>);

impl SourceLinks {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    /// The link of a displayed name: the name itself when it is an http(s) URL, else the
    /// URL of its longest configured prefix followed by the rest of the name.
    pub fn link(&self, name: &str) -> Option<String> {
        if name.starts_with("https://") || name.starts_with("http://") {
            return Some(name.to_owned());
        }
        let (prefix, base) = self
            .0
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())?;
        Some(format!("{base}{}", url_path(&name[prefix.len()..])))
    }
}

/// A relative name as a URL path: `/` kept, everything outside the unreserved set and a
/// few path characters percent-encoded (UTF-8 bytes).
fn url_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_of_older_stores_show_their_last_two_components() {
        assert_eq!(
            display_name("/srv/data/knowledge_db/pumpkin_book/pumpkin_book.pdf"),
            "pumpkin_book/pumpkin_book.pdf"
        );
        assert_eq!(display_name(r"C:\kb\notes\tea.md"), "notes/tea.md");
        assert_eq!(display_name("/tea.md"), "tea.md");
        // Relative names, URLs and chat links stay as they are.
        assert_eq!(display_name("guide/intro.md"), "guide/intro.md");
        assert_eq!(
            display_name("https://discord.com/channels/1/2/3"),
            "https://discord.com/channels/1/2/3"
        );
    }

    #[test]
    fn links_use_the_longest_prefix_and_encode_the_rest() {
        let links = SourceLinks::new(BTreeMap::from([
            ("".to_owned(), "https://wiki.example/kb/".to_owned()),
            (
                "handbook/".to_owned(),
                "https://git.example/handbook/blob/main/".to_owned(),
            ),
        ]));
        assert_eq!(
            links.link("handbook/on call.md").as_deref(),
            Some("https://git.example/handbook/blob/main/on%20call.md")
        );
        assert_eq!(
            links.link("南瓜书.pdf").as_deref(),
            Some("https://wiki.example/kb/%E5%8D%97%E7%93%9C%E4%B9%A6.pdf")
        );
        assert_eq!(
            SourceLinks::default()
                .link("https://t.me/team/5")
                .as_deref(),
            Some("https://t.me/team/5")
        );
        assert_eq!(SourceLinks::default().link("tea.md"), None);
    }
}
