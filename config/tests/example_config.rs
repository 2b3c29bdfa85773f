//! The example config shipped in packaging/ documents every key with its
//! default: uncommented, it must parse to exactly the defaults, and it must
//! mention every key the config has.

use std::path::Path;

use otpgate_config::SystemConfig;

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/config.toml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_example_config_parses_as_shipped() {
    let c = SystemConfig::from_toml(Path::new("config.toml"), &example()).unwrap();
    assert_eq!(c, SystemConfig::default());
}

#[test]
fn uncommented_the_example_states_the_defaults() {
    let uncommented: String = example()
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = SystemConfig::from_toml(Path::new("config.toml"), &uncommented).unwrap();
    assert_eq!(c, SystemConfig::default());
}

#[test]
fn the_example_mentions_every_key() {
    let table = toml::Table::try_from(SystemConfig::default()).unwrap();
    let text = example();
    let mut keys = Vec::new();
    for (k, v) in &table {
        match v {
            toml::Value::Table(t) => keys.extend(t.keys().map(|sub| sub.to_string())),
            _ => keys.push(k.to_string()),
        }
    }
    for key in keys {
        assert!(
            text.contains(&format!("#{key} = ")),
            "key `{key}` is not documented"
        );
    }
}
