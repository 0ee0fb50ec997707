//! A command refused because another lore process holds the data dir (one writer per data
//! dir): the refusal names the holder, and says what to do instead: stop it, or send the
//! same request to its HTTP API, as a `curl` line for the command that was tried.

use std::path::Path;

use lore_core::kb::OpenError;
use lore_core::store::StoreError;
use lore_core::store::embedded::InUse;

use super::Command;

/// What to send instead of one command, with `{base}` standing for the holder's address.
pub struct Hint {
    requests: Vec<String>,
    /// Why there is no request to send, when there is none.
    none: Option<&'static str>,
}

const AUTH: &str = "-H \"Authorization: Bearer $LORE_TOKEN\"";
const JSON: &str = "-H 'content-type: application/json'";

impl Hint {
    /// The HTTP requests equivalent to `command` (see `src/http/routes.rs`).
    pub fn for_command(command: &Command) -> Self {
        let requests = |r: Vec<String>| Self {
            requests: r,
            none: None,
        };
        let none = |why| Self {
            requests: Vec::new(),
            none: Some(why),
        };
        match command {
            Command::Ingest { inputs, .. } => requests(
                inputs
                    .iter()
                    .map(|input| {
                        if input.starts_with("http://") || input.starts_with("https://") {
                            format!("curl {AUTH} -F url={} {{base}}/v1/ingest", quote(input))
                        } else if Path::new(input).is_dir() {
                            format!(
                                "find {} -type f -exec curl {AUTH} -F file=@{{}} {{base}}/v1/ingest \\;",
                                quote(input)
                            )
                        } else {
                            format!(
                                "curl {AUTH} -F file=@{} {{base}}/v1/ingest",
                                quote(input)
                            )
                        }
                    })
                    .collect(),
            ),
            Command::Search {
                query: Some(query),
                k,
                ..
            } => {
                let mut body = serde_json::json!({ "query": query });
                if let Some(k) = k {
                    body["top_k"] = (*k).into();
                }
                requests(vec![post("/v1/search", &body)])
            }
            Command::Search { .. } => requests(vec![post(
                "/v1/search",
                &serde_json::json!({"query": "one line of the batch"}),
            )]),
            Command::Ask { question, .. } => requests(vec![post(
                "/v1/ask",
                &serde_json::json!({ "question": question }),
            )]),
            Command::Chat { conversation } => {
                let mut body = serde_json::json!({"question": "..."});
                if let Some(id) = conversation {
                    body["conversation_id"] = id.as_str().into();
                }
                requests(vec![post("/v1/ask", &body), "open {base}/ in a browser".into()])
            }
            Command::Sources { .. } => requests(vec![format!("curl {AUTH} {{base}}/v1/sources")]),
            Command::Forget { source } => requests(vec![format!(
                "curl -X DELETE {AUTH} {{base}}/v1/sources/{}",
                percent_encode(source)
            )]),
            Command::Stats { .. } => requests(vec![
                format!("curl {AUTH} {{base}}/v1/sources"),
                "curl -s {base}/metrics | grep '^lore_store_'".into(),
            ]),
            Command::Serve { .. } => none("lore serve is already running on it"),
            _ => none("this command has no HTTP equivalent"),
        }
    }

    /// `err` with what to do added when it is a data dir held by another process;
    /// any other error unchanged.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        match in_use(&err) {
            Some(in_use) => anyhow::anyhow!("{}", self.message(in_use)),
            None => err,
        }
    }

    fn message(&self, in_use: &InUse) -> String {
        let mut text = in_use.to_string();
        let http = in_use.holder.as_ref().and_then(|h| h.http.as_deref());
        match (http, self.none) {
            (_, Some(why)) => {
                text.push_str(&format!(
                    "\n{why}: stop that process (pid {}), then run this again",
                    in_use.holder.as_ref().map_or(0, |h| h.pid)
                ));
            }
            (Some(address), None) => {
                let base = format!("http://{}", reachable(address));
                text.push_str(
                    "\nThe same request over its HTTP API (LORE_TOKEN: a token from \
                     LORE_HTTP_TOKENS; ingest and forget need an admin one):",
                );
                for request in &self.requests {
                    text.push_str("\n  ");
                    text.push_str(&request.replace("{base}", &base));
                }
            }
            (None, None) => text.push_str(
                "\nIt has no HTTP API: stop it and run this again, or run lore serve with \
                 [http] listen set (e.g. LORE_HTTP__LISTEN=127.0.0.1:8080) and send requests \
                 to it",
            ),
        }
        text
    }
}

/// The held data dir an error is about, if it is one.
fn in_use(err: &anyhow::Error) -> Option<&InUse> {
    err.chain().find_map(|e| {
        let store = e
            .downcast_ref::<StoreError>()
            .or_else(|| match e.downcast_ref() {
                Some(OpenError::Store(store)) => Some(store),
                _ => None,
            });
        match store {
            Some(StoreError::InUse(in_use)) => Some(in_use.as_ref()),
            _ => None,
        }
    })
}

/// A JSON POST as a curl line.
fn post(path: &str, body: &serde_json::Value) -> String {
    format!(
        "curl {AUTH} {JSON} -d {} {{base}}{path}",
        quote(&body.to_string())
    )
}

/// An address a client on this machine can reach: a wildcard listen address is reached
/// on loopback.
fn reachable(address: &str) -> String {
    if let Some(port) = address.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = address.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        address.to_owned()
    }
}

/// One shell word: single-quoted unless it is plain.
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=,+%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A path segment, percent-encoded (RFC 3986 unreserved characters kept).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lore_core::store::embedded::Holder;

    fn held(http: Option<&str>) -> anyhow::Error {
        let in_use = InUse {
            data_dir: "/srv/lore".into(),
            holder: Some(Holder {
                pid: 4242,
                command: "lore serve".into(),
                since: 1_700_000_000,
                http: http.map(str::to_owned),
            }),
        };
        anyhow::Error::from(OpenError::Store(StoreError::InUse(Box::new(in_use))))
    }

    #[test]
    fn each_command_gets_its_request_on_the_holders_address() {
        let forget = Hint::for_command(&Command::Forget {
            source: "docs/it's a guide.md".into(),
        });
        let text = forget.explain(held(Some("0.0.0.0:8080"))).to_string();
        assert!(
            text.contains("pid 4242") && text.contains("lore serve"),
            "{text}"
        );
        assert!(
            text.contains(
                "curl -X DELETE -H \"Authorization: Bearer $LORE_TOKEN\" \
                 http://127.0.0.1:8080/v1/sources/docs%2Fit%27s%20a%20guide.md"
            ),
            "{text}"
        );
        let ask = Hint::for_command(&Command::Ask {
            question: "what's up?".into(),
            json: false,
        });
        let text = ask.explain(held(Some("127.0.0.1:9"))).to_string();
        assert!(
            text.contains(r#"-d '{"question":"what'\''s up?"}' http://127.0.0.1:9/v1/ask"#),
            "{text}"
        );
        let stats = Hint::for_command(&Command::Stats { json: false });
        let text = stats.explain(held(None)).to_string();
        assert!(
            text.contains("no HTTP API") && !text.contains("curl"),
            "{text}"
        );
        let other = anyhow::anyhow!("something else");
        assert_eq!(stats.explain(other).to_string(), "something else");
    }
}
