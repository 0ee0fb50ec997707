//! The bot token must never reach a log or a reply. teloxide already hides it in the URLs of
//! its network errors; this removes it from any message, whatever produced it.

use std::sync::Arc;

/// Replaces the token in error text.
#[derive(Clone)]
pub struct Redactor {
    token: Arc<str>,
}

impl Redactor {
    pub fn new(token: &str) -> Self {
        Self {
            token: Arc::from(token),
        }
    }

    /// The error's text, with the token (and its secret half alone) replaced.
    pub fn clean(&self, error: &dyn std::fmt::Display) -> String {
        let mut text = error.to_string();
        if !self.token.is_empty() {
            text = text.replace(&*self.token, "<token>");
            if let Some((_, secret)) = self.token.split_once(':')
                && secret.len() >= 8
            {
                text = text.replace(secret, "<token>");
            }
        }
        text
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(<token>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_and_its_secret_are_removed() {
        let r = Redactor::new("123:ABCDEFGHIJ");
        assert_eq!(
            r.clean(&"GET /bot123:ABCDEFGHIJ/x and ABCDEFGHIJ"),
            "GET /bot<token>/x and <token>"
        );
    }
}
