//! Test-only access to settings.toml, the one source of defaults: a section as its type.

use serde::de::DeserializeOwned;

const DEFAULTS: &str = include_str!("../../settings.toml");

/// `[name]` of settings.toml (dots go into nested tables), deserialized.
pub fn section<T: DeserializeOwned>(name: &str) -> T {
    let mut value: toml::Value =
        toml::Value::Table(DEFAULTS.parse().expect("settings.toml parses"));
    for part in name.split('.') {
        value = value
            .get(part)
            .unwrap_or_else(|| panic!("settings.toml has no [{name}]"))
            .clone();
    }
    value
        .try_into()
        .unwrap_or_else(|e| panic!("settings.toml [{name}]: {e}"))
}
