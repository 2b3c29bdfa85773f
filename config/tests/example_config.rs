//! The example config shipped in packaging/ documents every key with its
//! default: uncommented, it must parse to exactly the defaults, and it must
//! mention every key the config has. Its table headers are commented too,
//! so a key appended at its end is a top-level key.

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

/// `sudo sh -c "echo 'remember_days = 7' >> /etc/otpgate/config.toml"`
/// sets the key: no table header stands open above the end of the file.
#[test]
fn a_key_appended_to_the_example_is_a_top_level_key() {
    let mut text = example();
    assert!(text.ends_with('\n'));
    text.push_str("remember_days = 7\n");
    let c =
        SystemConfig::from_toml(Path::new("config.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.remember_days, 7);
    assert_eq!(
        c,
        SystemConfig {
            remember_days: 7,
            ..SystemConfig::default()
        }
    );
}

/// The headers of the tables the config always has (`#[policy]`,
/// `#[channels]`), which an admin uncommenting the example uncomments with
/// their keys; the channel tables stay commented (a channel's header alone
/// turns it on).
fn is_commented_table_header(line: &str) -> bool {
    let table = toml::Table::try_from(SystemConfig::default()).unwrap();
    line.strip_prefix("#[")
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|name| table.get(name).is_some_and(toml::Value::is_table))
}

#[test]
fn uncommented_the_example_states_the_defaults() {
    let uncommented: String = example()
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            Some(rest) if is_commented_table_header(l) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\n[policy]\n") && uncommented.contains("\n[channels]\n"));
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

/// The README's `[[policy.override]]` example parses, and does what the
/// README says: sudo honours no remembered host, wheel may not use SMS
/// (except on sudo, whose entry comes first), contractors must enroll.
#[test]
fn the_readme_override_example_does_what_it_says() {
    use otpgate_config::Account;
    use otpgate_config::system::{Factor, Require};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let section = readme
        .split_once("### Settings per group or service")
        .expect("the section")
        .1;
    let block = section
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .expect("a toml block")
        .0;
    let text = format!("remember_days = 7\n{block}");
    let c =
        SystemConfig::from_toml(Path::new("README.md"), &text).unwrap_or_else(|e| panic!("{e}"));
    let user = |groups: &[&str]| {
        let mut all = vec!["users"];
        all.extend(groups);
        Account::for_tests("alice", 1000, 1000, "/home/alice", &all)
    };
    let sudo = c.for_login(&user(&[]), Some("sudo"));
    assert_eq!(sudo.remember_days, 0);
    assert_eq!(c.for_login(&user(&[]), Some("sshd")).remember_days, 7);
    let wheel = c.for_login(&user(&["wheel"]), Some("sshd"));
    assert!(!wheel.allows(Factor::Sms) && wheel.allows(Factor::App));
    assert!(
        c.for_login(&user(&["wheel"]), Some("sudo"))
            .allows(Factor::Sms)
    );
    let contractor = c.for_login(&user(&["contractors"]), Some("sshd"));
    assert_eq!(contractor.policy.require, Require::All);
}
