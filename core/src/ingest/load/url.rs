//! Fetching a URL: http(s) only, no private addresses unless allowed (re-checked on every
//! redirect), a streamed body capped at the file limit, and a timeout over it all.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use super::address::special_purpose;
use super::{LoadError, LoadLimits, kind_for_path, load_bytes_blocking};
use crate::ingest::document::{DocKind, Document};

/// Fetches an http(s) URL and loads it; the kind comes from the Content-Type, else from
/// the URL's extension, and the document's source is the final URL after redirects.
pub async fn fetch_url(url: &str, limits: &LoadLimits) -> Result<Document, LoadError> {
    let timeout = limits.fetch_timeout;
    let fetched = tokio::time::timeout(timeout, fetch(url, limits))
        .await
        .map_err(|_| LoadError::Fetch {
            url: url.to_string(),
            reason: format!("timed out after {timeout:?}"),
        })??;
    let source = fetched.url.to_string();
    let Some(kind) = kind_for(&fetched.url, fetched.content_type.as_deref()) else {
        return Err(LoadError::Unsupported {
            source,
            reason: format!(
                "content type {} and no known file extension",
                fetched.content_type.as_deref().unwrap_or("(none)")
            ),
        });
    };
    let bytes = to_utf8(kind, fetched.content_type.as_deref(), fetched.body);
    load_bytes_blocking(source, kind, bytes, limits).await
}

struct Fetched {
    url: Url,
    content_type: Option<String>,
    body: Vec<u8>,
}

async fn fetch(url: &str, limits: &LoadLimits) -> Result<Fetched, LoadError> {
    let mut current =
        Url::parse(url).map_err(|e| forbidden(url, format!("not a valid URL: {e}")))?;
    for _ in 0..=limits.max_redirects {
        check_scheme(&current)?;
        let addrs = resolve_checked(&current, limits).await?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(limits.fetch_timeout)
            // Some sites refuse requests that carry no User-Agent.
            .user_agent(concat!("lore/", env!("CARGO_PKG_VERSION")));
        // Connect only to the addresses just checked, so a second DNS answer cannot
        // swap in a private address (DNS rebinding).
        if let Some(domain) = current.host_str().filter(|h| ip_literal(h).is_none()) {
            client = client.resolve_to_addrs(domain, &addrs);
        }
        let client = client
            .build()
            .map_err(|e| fetch_error(&current, &e, limits))?;
        let mut response = client
            .get(current.clone())
            .send()
            .await
            .map_err(|e| fetch_error(&current, &e, limits))?;
        // The addresses were checked before connecting; the socket is checked too, so
        // nothing between the check and the connection (a proxy, a resolver quirk) can
        // land the request somewhere internal.
        if !limits.allow_private_hosts
            && let Some(peer) = response.remote_addr()
            && let Some(what) = special_purpose(peer.ip())
        {
            return Err(forbidden(
                current.as_str(),
                format!(
                    "connected to {}, which is not a public address ({what})",
                    peer.ip()
                ),
            ));
        }
        let status = response.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| {
                    fetch_failed(&current, format!("HTTP {status} without a Location"))
                })?;
            current = current
                .join(location)
                .map_err(|e| fetch_failed(&current, format!("bad redirect to {location}: {e}")))?;
            continue;
        }
        if !status.is_success() {
            return Err(fetch_failed(&current, format!("HTTP {status}")));
        }
        let too_large = |size: u64| LoadError::TooLarge {
            source: current.to_string(),
            size,
            limit: limits.max_file_bytes,
        };
        if let Some(len) = response
            .content_length()
            .filter(|len| *len > limits.max_file_bytes)
        {
            return Err(too_large(len));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Content-Length may be absent or wrong, so the cap is enforced on what arrives.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_error(&current, &e, limits))?
        {
            let size = (body.len() + chunk.len()) as u64;
            if size > limits.max_file_bytes {
                return Err(too_large(size));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Fetched {
            url: current,
            content_type,
            body,
        });
    }
    Err(fetch_failed(
        &current,
        format!(
            "more than {} redirects (started at {url})",
            limits.max_redirects
        ),
    ))
}

fn check_scheme(url: &Url) -> Result<(), LoadError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(forbidden(
            url.as_str(),
            format!("scheme {other}: is not http or https"),
        )),
    }
}

/// Resolves the URL's host and, unless private hosts are allowed, refuses it if any
/// address is not public.
async fn resolve_checked(url: &Url, limits: &LoadLimits) -> Result<Vec<SocketAddr>, LoadError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let Some(host) = url.host_str() else {
        return Err(forbidden(url.as_str(), "no host"));
    };
    let addrs: Vec<SocketAddr> = match ip_literal(host) {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => {
            let target = (host.to_string(), port);
            tokio::task::spawn_blocking(move || target.to_socket_addrs().map(Iterator::collect))
                .await
                .map_err(|e| fetch_failed(url, format!("DNS lookup crashed: {e}")))?
                .map_err(|e| fetch_failed(url, format!("cannot resolve {host}: {e}")))?
        }
    };
    if addrs.is_empty() {
        return Err(fetch_failed(url, "the host has no addresses"));
    }
    if !limits.allow_private_hosts
        && let Some((ip, what)) = addrs
            .iter()
            .find_map(|a| special_purpose(a.ip()).map(|what| (a.ip(), what)))
    {
        return Err(forbidden(
            url.as_str(),
            format!("{ip} is not a public address ({what})"),
        ));
    }
    Ok(addrs)
}

/// The address of a host written as an IP literal ("127.0.0.1", "[::1]").
fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The document kind from a Content-Type, falling back to the URL's extension. Servers
/// often send Markdown and subtitles as text/plain (raw GitHub does), so for plain text a
/// more specific extension wins.
fn kind_for(url: &Url, content_type: Option<&str>) -> Option<DocKind> {
    let by_ext = kind_for_path(Path::new(url.path()));
    let mime = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let by_type = match mime.as_deref().unwrap_or_default() {
        "text/html" | "application/xhtml+xml" => Some(DocKind::Html),
        "application/pdf" => Some(DocKind::Pdf),
        "text/markdown" | "text/x-markdown" => Some(DocKind::Markdown),
        "text/vtt" | "application/x-subrip" => Some(DocKind::Subtitles),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
            Some(DocKind::Docx)
        }
        "text/plain" => Some(DocKind::Text),
        _ => None,
    };
    match (by_type, by_ext) {
        (Some(DocKind::Text), Some(ext @ (DocKind::Markdown | DocKind::Subtitles))) => Some(ext),
        (Some(kind), _) => Some(kind),
        (None, ext) => ext,
    }
}

/// Transcodes a text body to UTF-8 when the Content-Type names another charset (a GBK
/// page, say); binary kinds are left alone.
fn to_utf8(kind: DocKind, content_type: Option<&str>, body: Vec<u8>) -> Vec<u8> {
    if matches!(kind, DocKind::Pdf | DocKind::Docx) {
        return body;
    }
    let label = content_type
        .and_then(|ct| {
            ct.split(';')
                .find_map(|p| p.trim().strip_prefix("charset="))
        })
        .map(|l| l.trim_matches('"'));
    match label.and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes())) {
        Some(enc) if enc != encoding_rs::UTF_8 => enc.decode(&body).0.into_owned().into_bytes(),
        _ => body,
    }
}

fn forbidden(url: &str, reason: impl Into<String>) -> LoadError {
    LoadError::Forbidden {
        url: url.to_string(),
        reason: reason.into(),
    }
}

fn fetch_failed(url: &Url, reason: impl Into<String>) -> LoadError {
    LoadError::Fetch {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// A reqwest error as a `Fetch` error, with its cause chain (reqwest's own message is terse).
fn fetch_error(url: &Url, err: &reqwest::Error, limits: &LoadLimits) -> LoadError {
    if err.is_timeout() {
        return fetch_failed(url, format!("timed out after {:?}", limits.fetch_timeout));
    }
    let mut reason = if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "error reading the body"
    } else {
        "request failed"
    }
    .to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        reason.push_str(": ");
        reason.push_str(&c.to_string());
        cause = c.source();
    }
    fetch_failed(url, reason)
}

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
