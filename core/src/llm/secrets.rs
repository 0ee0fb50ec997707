//! API keys: read from the environment or `.env`, and never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::LlmError;

/// One secret value; `Debug` prints `Secret(***)` and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for building a request; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Vendor credentials by environment-variable name: the real environment first, then `.env`.
#[derive(Clone, Default)]
pub struct Secrets {
    dotenv: BTreeMap<String, Secret>,
    overrides: BTreeMap<String, Secret>,
    use_process_env: bool,
}

impl Secrets {
    /// Reads `.env` in the working directory if present; the real environment wins over it.
    pub fn from_env() -> Result<Self, LlmError> {
        Self::from_env_and_file(Path::new(".env"))
    }

    /// Like [`Secrets::from_env`] with an explicit `.env` path (absent is fine).
    pub fn from_env_and_file(path: &Path) -> Result<Self, LlmError> {
        let mut dotenv = BTreeMap::new();
        if path.exists() {
            // from_path_iter parses without touching the process environment.
            let iter = dotenvy::from_path_iter(path)
                .map_err(|e| LlmError::config(format!("{}: {e}", path.display())))?;
            for item in iter {
                let (name, value) = item.map_err(|e| {
                    // dotenvy's line errors quote the line, which may hold a key: keep only the line number.
                    let line = match &e {
                        dotenvy::Error::LineParse(_, index) => format!("near character {index}"),
                        _ => "unreadable".to_string(),
                    };
                    LlmError::config(format!("{}: malformed entry {line}", path.display()))
                })?;
                dotenv.insert(name, Secret(value));
            }
        }
        Ok(Secrets {
            dotenv,
            overrides: BTreeMap::new(),
            use_process_env: true,
        })
    }

    /// Secrets from explicit pairs only, ignoring the environment (tests, embedding callers).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Secrets {
            dotenv: BTreeMap::new(),
            overrides: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), Secret(v.into())))
                .collect(),
            use_process_env: false,
        }
    }

    /// The secret named `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<Secret> {
        if let Some(v) = self.overrides.get(name) {
            return Some(v.clone());
        }
        if self.use_process_env
            && let Ok(v) = std::env::var(name)
            && !v.is_empty()
        {
            return Some(Secret(v));
        }
        self.dotenv.get(name).filter(|s| !s.0.is_empty()).cloned()
    }

    /// The secret named `name`, or a configuration error naming the variable (not its value).
    pub fn require(&self, name: &str, provider: &str) -> Result<Secret, LlmError> {
        self.get(name).ok_or_else(|| {
            LlmError::config(format!(
                "provider {provider} needs the environment variable {name} (or a line in .env)"
            ))
        })
    }

    fn names(&self) -> Vec<&str> {
        self.overrides
            .keys()
            .chain(self.dotenv.keys())
            .map(String::as_str)
            .collect()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.names())
            .field("process_env", &self.use_process_env)
            .finish()
    }
}

impl fmt::Display for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secrets for {}", self.names().join(", "))
    }
}
