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

/// The channel tables are commented out in the example (channels are off by
/// default); each key is there with its default, and uncommented the tables
/// give exactly the defaults.
#[test]
fn the_example_documents_every_channel_key_with_its_default() {
    use otpgate_config::channel::{EmailChannel, SmsChannel};
    let text = example();
    let section = |name: &str| {
        let start = text.find(&format!("#[channels.{name}]")).unwrap();
        let rest = &text[start..];
        let end = rest[1..].find("#[").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let uncomment = |s: &str| -> String {
        s.lines()
            .filter_map(|l| {
                if let Some(t) = l.strip_prefix("#[") {
                    Some(format!("[{t}"))
                } else {
                    l.strip_prefix("# ")
                        .filter(|r| {
                            r.split_once(" = ").is_some_and(|(k, _)| {
                                k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                            })
                        })
                        .map(str::to_string)
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let email = uncomment(&section("email"));
    let sms = uncomment(&section("sms"));
    let both = format!("{email}\n{sms}\n");
    let c = SystemConfig::from_toml(Path::new("config.toml"), &format!("[channels]\n{both}"))
        .unwrap_or_else(|e| panic!("{e}\n{both}"));
    assert_eq!(c.channels.email, Some(EmailChannel::default()));
    let sms_default = SmsChannel {
        command: vec!["/usr/local/bin/send-sms".into(), "{to}".into()],
        ..SmsChannel::default()
    };
    assert_eq!(c.channels.sms, Some(sms_default));
    for (name, value) in [
        (
            "email",
            toml::Table::try_from(EmailChannel::default()).unwrap(),
        ),
        ("sms", toml::Table::try_from(SmsChannel::default()).unwrap()),
    ] {
        let s = section(name);
        for key in value.keys() {
            assert!(
                s.contains(&format!("# {key} = ")),
                "[channels.{name}] {key}"
            );
        }
    }
}
