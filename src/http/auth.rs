//! Bearer tokens from the environment, each bound to one tenant and one role.
//! `LORE_HTTP_TOKENS="token:tenant:role,..."` (role `read` or `admin`). A request's tenant
//! is always its token's; the token itself never appears in logs, bodies or errors.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Shortest token accepted, so a guessable word cannot be configured by mistake.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ask, search, list sources.
    Read,
    /// Also ingest and delete sources.
    Admin,
}

/// Who is calling: the token's tenant and role, and a stable pseudonymous user id (a hash
/// prefix of the token) for rate limits and conversation keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub role: Role,
    pub user: String,
}

/// The configured tokens, looked up by their SHA-256 so no token is kept in plain form.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Principal>,
}

/// A token list that cannot be used; the message never contains a token.
#[derive(Debug, thiserror::Error)]
#[error("{env}: entry {entry}: {reason}")]
pub struct TokensError {
    env: String,
    entry: usize,
    reason: String,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses "token:tenant:role,..." from the variable `env` (for error messages).
    pub fn parse(env: &str, value: &str) -> Result<Self, TokensError> {
        let mut by_hash = HashMap::new();
        for (i, entry) in value
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let err = |reason: &str| TokensError {
                env: env.to_owned(),
                entry: i + 1,
                reason: reason.to_owned(),
            };
            // From the right, so a token may itself contain ':'.
            let mut parts = entry.rsplitn(3, ':');
            let (Some(role), Some(tenant), Some(token)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(err("expected token:tenant:role"));
            };
            let role = match role.trim() {
                "read" => Role::Read,
                "admin" => Role::Admin,
                _ => return Err(err("the role must be read or admin")),
            };
            let tenant = tenant.trim();
            if tenant.is_empty() {
                return Err(err("the tenant is empty"));
            }
            let token = token.trim();
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(err(&format!(
                    "the token is shorter than {MIN_TOKEN_CHARS} characters"
                )));
            }
            let hash = digest(token);
            let principal = Principal {
                tenant: tenant.to_owned(),
                role,
                user: format!("tok-{}", hex::encode(&hash[..6])),
            };
            if by_hash.insert(hash, principal).is_some() {
                return Err(err("the same token is listed twice"));
            }
        }
        if by_hash.is_empty() {
            return Err(TokensError {
                env: env.to_owned(),
                entry: 0,
                reason: "no tokens; set it to \"token:tenant:role,...\"".to_owned(),
            });
        }
        Ok(Self { by_hash })
    }

    /// The principal of an `Authorization` header value, if it carries a known bearer token.
    pub fn check(&self, authorization: Option<&str>) -> Option<&Principal> {
        let value = authorization?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.by_hash.get(&digest(token.trim()))
    }

    /// Tokens configured.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_a_tenant_and_a_role() {
        let t = Tokens::parse(
            "T",
            "aaaaaaaaaaaaaaaa:acme:read, b:b:bbbbbbbbbbbbbbb:globex:admin",
        )
        .unwrap();
        let p = t.check(Some("Bearer aaaaaaaaaaaaaaaa")).unwrap();
        assert_eq!((p.tenant.as_str(), p.role), ("acme", Role::Read));
        let p = t.check(Some("bearer b:b:bbbbbbbbbbbbbbb")).unwrap();
        assert_eq!((p.tenant.as_str(), p.role), ("globex", Role::Admin));
        assert!(t.check(Some("Bearer nope-nope-nope-nope")).is_none());
        assert!(t.check(Some("Basic aaaaaaaaaaaaaaaa")).is_none());
        assert!(t.check(None).is_none());
    }

    #[test]
    fn bad_lists_are_refused_without_echoing_tokens() {
        for bad in [
            "",
            "tiny:acme:read",
            "aaaaaaaaaaaaaaaa:acme:root",
            "aaaaaaaaaaaaaaaa::read",
        ] {
            let e = Tokens::parse("T", bad).unwrap_err().to_string();
            assert!(
                !e.contains("aaaaaaaaaaaaaaaa") && !e.contains("tiny"),
                "{e}"
            );
        }
    }
}
