//! `otpgate check --user NAME --service NAME`: the settings of one login
//! after `[[policy.override]]` (`SystemConfig::resolve`, the function the
//! module and otpgated use), and which part of the config decided each.
#![forbid(unsafe_code)]

use std::path::Path;

use otpgate_config::channel::Kind;
use otpgate_config::record::View;
use otpgate_config::system::Factor;
use otpgate_config::system::{Override, Require, Requirement, Resolved, Setting, Source};
use otpgate_config::{Account, SystemConfig};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Serialize)]
struct SettingJson {
    setting: &'static str,
    value: Value,
    /// `base` or `policy.override[N]`.
    decided_by: String,
    /// The base key the value replaces (`policy.require`).
    base_key: &'static str,
    /// The entry's match (`services = ["sudo"]`), when an entry decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    r#match: Option<String>,
    /// False when the entry only may match (membership unknown).
    certain: bool,
}

#[derive(Debug, Serialize)]
struct EffectiveJson {
    config: String,
    user: String,
    service: String,
    /// The first entry that matched, by index; null: none did.
    matched: Option<usize>,
    /// Entries that may match (group membership unknown).
    uncertain: Vec<usize>,
    /// `exempt`, `required`, `if-enrolled`.
    requirement: &'static str,
    settings: Vec<SettingJson>,
    /// What the user's enrollment offers on this login; null: not enrolled.
    answers: Option<Vec<AnswerJson>>,
}

/// One way the user could answer, and whether this login allows it.
#[derive(Debug, Serialize)]
struct AnswerJson {
    /// `totp`, `hotp`, `backup`, `email`, `sms`.
    method: &'static str,
    /// The device, for an app code.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    /// Backup codes left.
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<usize>,
    allowed: bool,
}

/// Prints the effective policy for `user` on `service`.
pub fn run(
    config_path: &Path,
    required: bool,
    json: bool,
    user: &str,
    service: &str,
) -> Result<()> {
    let base = match SystemConfig::load(config_path, required) {
        Ok(config) => config,
        Err(e) => {
            println!("error: {e} — the module denies every login that reaches it (fails closed)");
            return Err(CliError::CheckFailed(1));
        }
    };
    let account = Account::lookup(user)?;
    let resolved = base.resolve(&account, Some(service));
    let entries = &base.policy.overrides;
    let requirement = match resolved.config.requirement(&account) {
        Requirement::Exempt => "exempt",
        Requirement::Required => "required",
        Requirement::IfEnrolled => "if-enrolled",
    };
    let settings: Vec<SettingJson> = resolved
        .sources
        .iter()
        .map(|&(setting, source)| {
            let (decided_by, r#match, certain) = match source {
                Source::Base => ("base".to_string(), None, true),
                Source::Entry(i) => (entry_name(i), Some(entries[i].describe_match()), true),
                Source::Uncertain(i) => (entry_name(i), Some(entries[i].describe_match()), false),
            };
            SettingJson {
                setting: setting.key(),
                value: value(&resolved.config, setting),
                decided_by,
                base_key: setting.base_key(),
                r#match,
                certain,
            }
        })
        .collect();
    let answers = match crate::users::view_of(&base, &account.name) {
        Ok(view) => view.map(|v| answers(&resolved.config, &v)),
        Err(e) => {
            eprintln!("otpgate: {}'s enrollment cannot be read: {e}", account.name);
            None
        }
    };
    if json {
        return output::print_json(&EffectiveJson {
            config: config_path.display().to_string(),
            user: account.name.clone(),
            service: service.to_string(),
            matched: resolved.matched,
            uncertain: resolved.uncertain.clone(),
            requirement,
            settings,
            answers,
        });
    }
    print_text(
        &account,
        service,
        config_path,
        &resolved,
        entries,
        requirement,
        &settings,
    );
    print_answers(&account.name, answers.as_deref());
    Ok(())
}

/// What `view` offers, each with whether `config` (resolved for this
/// login) allows it: every device's codes, backup codes, sent codes.
fn answers(config: &SystemConfig, view: &View) -> Vec<AnswerJson> {
    let mut out: Vec<AnswerJson> = view
        .devices
        .iter()
        .map(|d| AnswerJson {
            method: d.method.as_str(),
            device: Some(d.name.as_str().to_string()),
            left: None,
            allowed: config.allows(Factor::App),
        })
        .collect();
    let left = view.backup_codes_left();
    if left > 0 {
        out.push(AnswerJson {
            method: "backup",
            device: None,
            left: Some(left),
            allowed: config.allows(Factor::Backup),
        });
    }
    for kind in [Kind::Email, Kind::Sms] {
        if view.record.destination(kind).is_some() {
            out.push(AnswerJson {
                method: kind.as_str(),
                device: None,
                left: None,
                allowed: config.allows(kind) && config.channels.get(kind).is_some(),
            });
        }
    }
    out
}

fn print_answers(user: &str, answers: Option<&[AnswerJson]>) {
    let Some(answers) = answers else {
        println!("  {user} has no enrollment");
        return;
    };
    println!("  {user} can answer with:");
    for a in answers {
        let what = match (&a.device, a.left) {
            (Some(device), _) => format!("{} codes from device {device}", a.method),
            (None, Some(left)) => format!("backup codes ({left} left)"),
            (None, None) => format!("codes sent by {}", a.method),
        };
        let allowed = if a.allowed {
            ""
        } else {
            " — not on this login (methods, or the channel is off)"
        };
        println!("    {what}{allowed}");
    }
}

fn entry_name(index: usize) -> String {
    format!("policy.override[{index}]")
}

fn print_text(
    account: &Account,
    service: &str,
    config_path: &Path,
    resolved: &Resolved,
    entries: &[Override],
    requirement: &str,
    settings: &[SettingJson],
) {
    println!(
        "Effective policy for {} on service {service} ({}):",
        account.name,
        config_path.display()
    );
    match resolved.matched {
        Some(i) => println!(
            "  {} matches ({}); first match wins",
            entry_name(i),
            entries[i].describe_match()
        ),
        None if entries.is_empty() => println!("  no [[policy.override]] entries: the base config"),
        None => println!("  no [[policy.override]] entry matches: the base config"),
    }
    for &i in &resolved.uncertain {
        println!(
            "  {} may match ({}; a group not found, or membership unreadable): where it is stricter, it holds (fails closed)",
            entry_name(i),
            entries[i].describe_match()
        );
    }
    println!();
    for s in settings {
        let from = match (&s.r#match, s.certain) {
            (None, _) => format!("base ({})", s.base_key),
            (Some(m), true) => format!("{} ({m})", s.decided_by),
            (Some(m), false) => format!("{} ({m}; may match, stricter)", s.decided_by),
        };
        let unit = match s.setting {
            "remember_days" => " days",
            "lockout_minutes" => " min",
            "verification_time" => " s",
            _ => "",
        };
        let value = format!("{}{unit}", words(&s.value));
        println!("  {:<18} {value:<34} {from}", s.setting);
    }
    println!();
    let said = match requirement {
        "exempt" => "exempt (policy.exempt_groups): no code asked",
        "required" => "must use a second factor: denied until enrolled",
        _ => {
            "asked for a code when enrolled; without an enrollment the rest of the PAM stack decides"
        }
    };
    println!("  {}: {said}", account.name);
}

/// A setting's value of `config`, for JSON.
fn value(config: &SystemConfig, setting: Setting) -> Value {
    match setting {
        Setting::Require => json!(match config.policy.require {
            Require::Enrolled => "enrolled",
            Require::All => "all",
        }),
        Setting::RememberDays => json!(config.remember_days),
        Setting::MaxAttempts => json!(config.max_attempts),
        Setting::LockoutAfter => json!(config.lockout_after),
        Setting::LockoutMinutes => json!(config.lockout_minutes),
        Setting::Methods => json!(
            config
                .allowed_methods()
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
        ),
        Setting::CodeLifetime => {
            let mut map = serde_json::Map::new();
            if let Some(e) = &config.channels.email {
                map.insert("email".into(), json!(e.code_lifetime));
            }
            if let Some(s) = &config.channels.sms {
                map.insert("sms".into(), json!(s.code_lifetime));
            }
            Value::Object(map)
        }
        Setting::VerificationTime => json!(config.channels.verification_time),
    }
}

/// A value as the text report says it.
fn words(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(map) if map.is_empty() => "(no channel configured)".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {v} min"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// `[[policy.override]]` groups that do not resolve: the module cannot
/// tell a typo from a directory service that is down, so such an entry
/// applies to everyone where it is stricter (and nowhere it is looser).
pub(super) fn check_override_groups(config: &SystemConfig, report: &mut super::Report) {
    let missing = |g: &&String| !matches!(nix::unistd::Group::from_name(g), Ok(Some(_)));
    for (i, entry) in config.policy.overrides.iter().enumerate() {
        for group in entry.groups.iter().filter(missing) {
            report.add(
                super::Severity::Warning,
                None,
                format!(
                    "{}: group `{group}` is not found; the entry then applies to every login it \
                     would make stricter, and to none it would loosen (fails closed)",
                    entry_name(i)
                ),
            );
        }
    }
}

/// For the summary of a service: the entries that may change what it says.
pub(super) fn summary(config: &SystemConfig, service: &str) -> Option<String> {
    let entries = &config.policy.overrides;
    let here: Vec<String> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.services.is_empty() || e.services.iter().any(|s| s == service))
        .map(|(i, _)| entry_name(i))
        .collect();
    if here.is_empty() {
        return None;
    }
    Some(format!(
        "{} may change these settings for some logins (first match wins): \
         `otpgate check --user NAME --service {service}` shows one login's",
        here.join(", ")
    ))
}
