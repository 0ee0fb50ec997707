//! The settings loader never panics, whatever a settings file or the environment holds, and
//! a value it refuses is refused with an error that names its key.

use proptest::prelude::*;

use super::*;

/// Every scalar key of settings.toml as (section path, key), e.g. ("eval.judge", "model").
fn scalar_keys() -> Vec<(String, String)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
        for (key, value) in table {
            match value {
                toml::Value::Table(inner) => {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, inner, out);
                }
                toml::Value::Array(_) => {}
                _ if !prefix.is_empty() => out.push((prefix.to_owned(), key.clone())),
                _ => {}
            }
        }
    }
    let table: toml::Table = DEFAULTS.parse().expect("settings.toml is valid TOML");
    let mut keys = Vec::new();
    walk("", &table, &mut keys);
    keys
}

/// Values of every TOML shape, including ones out of any key's range.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,24}".prop_map(|s| format!("{:?}", s)),
        Just("[1, \"two\"]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("\"\"".to_owned()),
    ]
}

fn load_text(text: &str, env: Vec<(String, String)>) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lore.toml");
    std::fs::write(&path, text).unwrap();
    Settings::load(Some(&path), env)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_a_settings_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lore.toml");
        std::fs::write(&path, &bytes).unwrap();
        let _ = Settings::load(Some(&path), Vec::new());
    }

    #[test]
    fn a_refused_value_in_a_file_names_its_key(pick in any::<prop::sample::Index>(), value in value()) {
        let keys = scalar_keys();
        let (section, key) = &keys[pick.index(keys.len())];
        let text = format!("[{section}]\n{key} = {value}\n");
        if let Err(e) = load_text(&text, Vec::new()) {
            let message = e.to_string();
            prop_assert!(message.contains(key.as_str()), "{text}: {message}");
        }
    }

    #[test]
    fn a_refused_value_in_the_environment_names_its_key(
        pick in any::<prop::sample::Index>(),
        value in "[ -~]{0,24}",
    ) {
        let keys = scalar_keys();
        let (section, key) = &keys[pick.index(keys.len())];
        let name = format!("LORE_{}__{}", section.replace('.', "__"), key).to_uppercase();
        if let Err(e) = Settings::load(None, vec![(name.clone(), value.clone())]) {
            let message = e.to_string();
            prop_assert!(message.contains(key.as_str()), "{name}={value}: {message}");
        }
    }

    #[test]
    fn random_sections_and_keys_never_panic(
        section in "[a-z_.]{1,16}",
        key in "[a-z_]{1,16}",
        value in value(),
    ) {
        let _ = load_text(&format!("[{section}]\n{key} = {value}\n"), Vec::new());
    }
}
