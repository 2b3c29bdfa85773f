//! Codes sent by email or SMS: the `[channels]` table of the system config,
//! message templates, and the destinations a user may enroll.
//!
//! ```toml
//! [channels]
//! verification_time = 600
//! [channels.email]
//! command = ["/usr/sbin/sendmail", "-t", "-i"]
//! run_as = "otpgate-send"
//! [channels.sms]
//! command = ["/usr/local/bin/send-sms", "{to}"]
//! ```
//!
//! A channel that is absent is off. The command is an argv list (no shell);
//! its arguments may hold `{to}` (the address or number) and nothing else:
//! an argument list is visible to every local user, so the code only ever
//! travels on the command's standard input.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The two ways a code can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Email,
    Sms,
}

impl Kind {
    /// Every kind, in menu order.
    pub const ALL: [Kind; 2] = [Kind::Email, Kind::Sms];

    /// The word used in files, log lines and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Sms => "sms",
        }
    }

    /// How the prompt names it ("send a code by email").
    pub fn display(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Sms => "SMS",
        }
    }
}

/// Placeholders a message template may use.
pub const TEMPLATE_PLACEHOLDERS: [&str; 5] = ["code", "user", "host", "service", "minutes"];
/// Placeholders a command argument may use.
pub const COMMAND_PLACEHOLDERS: [&str; 1] = ["to"];
/// The default `run_as`: a system user of its own that the packages create
/// (no login shell, no other process): the command's processes and its
/// message are then reachable by no other local account, which a shared
/// uid like `nobody` cannot promise.
pub const DEFAULT_RUN_AS: &str = "otpgate-send";
/// The search path the command gets; everything else in its environment is
/// cleared.
pub const COMMAND_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// The `[channels]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Channels {
    /// Seconds a whole verification may take (every prompt, send and
    /// resend) for a user who is offered sent codes.
    pub verification_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsChannel>,
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            verification_time: 600,
            email: None,
            sms: None,
        }
    }
}

/// `[channels.email]`: the standard sendmail interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailChannel {
    pub command: Vec<String>,
    pub run_as: String,
    /// `From:` header; empty = none (the mail system fills it in).
    pub from: String,
    pub subject: String,
    pub template: String,
    pub code_digits: u8,
    /// Minutes a sent code stays valid.
    pub code_lifetime: u32,
    /// Seconds the command may run before it is killed.
    pub timeout: u64,
    pub max_sends_per_hour: u32,
}

impl Default for EmailChannel {
    fn default() -> Self {
        EmailChannel {
            command: vec!["/usr/sbin/sendmail".into(), "-t".into(), "-i".into()],
            run_as: DEFAULT_RUN_AS.into(),
            from: String::new(),
            subject: "Verification code for {host}".into(),
            template: "Your verification code for {user} on {host} ({service}) is {code}.\n\
                       It is valid for {minutes} minutes and works once.\n\
                       If you did not try to log in, someone else knows your password.\n"
                .into(),
            code_digits: 6,
            code_lifetime: 10,
            timeout: 10,
            max_sends_per_hour: 5,
        }
    }
}

/// `[channels.sms]`: the admin's gateway command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsChannel {
    /// No default: the gateway is site-specific.
    pub command: Vec<String>,
    pub run_as: String,
    pub template: String,
    pub code_digits: u8,
    pub code_lifetime: u32,
    pub timeout: u64,
    pub max_sends_per_hour: u32,
}

impl Default for SmsChannel {
    fn default() -> Self {
        SmsChannel {
            command: Vec::new(),
            run_as: DEFAULT_RUN_AS.into(),
            template: "{code} is your {host} login code ({minutes} min).".into(),
            code_digits: 6,
            code_lifetime: 10,
            timeout: 10,
            max_sends_per_hour: 5,
        }
    }
}

/// One channel's settings, whichever kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings<'a> {
    pub kind: Kind,
    pub command: &'a [String],
    pub run_as: &'a str,
    /// Email only.
    pub from: Option<&'a str>,
    /// Email only.
    pub subject: Option<&'a str>,
    pub template: &'a str,
    pub code_digits: u8,
    pub code_lifetime: u32,
    pub timeout: u64,
    pub max_sends_per_hour: u32,
}

impl Settings<'_> {
    /// Seconds a sent code stays valid.
    pub fn lifetime_seconds(&self) -> u64 {
        u64::from(self.code_lifetime) * 60
    }
}

impl Channels {
    /// The settings of `kind`, when the admin configured it.
    pub fn get(&self, kind: Kind) -> Option<Settings<'_>> {
        match kind {
            Kind::Email => self.email.as_ref().map(|e| Settings {
                kind,
                command: &e.command,
                run_as: &e.run_as,
                from: Some(&e.from),
                subject: Some(&e.subject),
                template: &e.template,
                code_digits: e.code_digits,
                code_lifetime: e.code_lifetime,
                timeout: e.timeout,
                max_sends_per_hour: e.max_sends_per_hour,
            }),
            Kind::Sms => self.sms.as_ref().map(|s| Settings {
                kind,
                command: &s.command,
                run_as: &s.run_as,
                from: None,
                subject: None,
                template: &s.template,
                code_digits: s.code_digits,
                code_lifetime: s.code_lifetime,
                timeout: s.timeout,
                max_sends_per_hour: s.max_sends_per_hour,
            }),
        }
    }

    /// The configured channels, in menu order.
    pub fn enabled(&self) -> Vec<Settings<'_>> {
        Kind::ALL.iter().filter_map(|&k| self.get(k)).collect()
    }

    /// Checks every configured channel; errors name `source` (the config
    /// file) and the dotted key.
    pub fn validate(&self, source: &str) -> Result<(), Error> {
        Error::check_range(
            source,
            "channels.verification_time",
            self.verification_time,
            VERIFICATION_TIME,
        )?;
        for s in self.enabled() {
            let key = |k: &str| format!("channels.{}.{k}", s.kind.as_str());
            validate_settings(&s).map_err(|(k, m)| Error::Invalid {
                source: source.into(),
                key: key(k),
                message: m,
            })?;
            for (k, value, range) in settings_ranges(&s) {
                Error::check_range(source, &key(k), value, range)?;
            }
        }
        Ok(())
    }
}

/// The numeric settings of a channel with their accepted ranges.
fn settings_ranges(s: &Settings<'_>) -> [(&'static str, u64, RangeInclusive<u64>); 4] {
    [
        ("code_digits", s.code_digits.into(), 6..=8),
        ("code_lifetime", s.code_lifetime.into(), CODE_LIFETIME),
        ("timeout", s.timeout, 1..=120),
        ("max_sends_per_hour", s.max_sends_per_hour.into(), 1..=60),
    ]
}

/// The accepted minutes of `code_lifetime` (a channel's, an override's).
pub(crate) const CODE_LIFETIME: RangeInclusive<u64> = 1..=60;
/// The accepted seconds of `verification_time` (the base key, an override's).
pub(crate) const VERIFICATION_TIME: RangeInclusive<u64> = 30..=3600;

fn validate_settings(s: &Settings<'_>) -> Result<(), (&'static str, String)> {
    let Some(program) = s.command.first() else {
        return Err(("command", "must name a program (an argv list)".into()));
    };
    if !program.starts_with('/') {
        return Err((
            "command",
            format!("`{program}` must be an absolute path (no shell, no PATH lookup)"),
        ));
    }
    for arg in s.command {
        if arg.contains(['\0', '\n', '\r']) {
            return Err((
                "command",
                "arguments must not hold NUL or line breaks".into(),
            ));
        }
        parse_template(arg, &COMMAND_PLACEHOLDERS).map_err(|m| {
            let hint = if arg.contains("{code}") {
                " (the code goes on standard input only: arguments are visible to every \
                 local user)"
            } else {
                ""
            };
            ("command", format!("{m}{hint}"))
        })?;
    }
    if s.run_as.is_empty() || s.run_as == "root" || s.run_as == "0" {
        return Err((
            "run_as",
            "must name an unprivileged user (never root)".into(),
        ));
    }
    if !s
        .run_as
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        || s.run_as.starts_with('-')
    {
        return Err(("run_as", format!("`{}` is not a user name", s.run_as)));
    }
    let pieces = parse_template(s.template, &TEMPLATE_PLACEHOLDERS).map_err(|m| ("template", m))?;
    if !pieces.iter().any(|p| matches!(p, Piece::Var("code"))) {
        return Err(("template", "must contain {code}".into()));
    }
    if s.template.len() > 4096 {
        return Err(("template", "longer than 4096 bytes".into()));
    }
    if let Some(from) = s.from
        && (from.chars().any(char::is_control) || from.len() > 256)
    {
        return Err((
            "from",
            "must be one line without control characters, at most 256 bytes".into(),
        ));
    }
    if let Some(subject) = s.subject {
        if subject.chars().any(char::is_control) || subject.len() > 256 {
            return Err((
                "subject",
                "must be one line without control characters, at most 256 bytes".into(),
            ));
        }
        parse_template(subject, &TEMPLATE_PLACEHOLDERS).map_err(|m| ("subject", m))?;
    }
    Ok(())
}

/// A parsed template: text and `{name}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// `{{` or `}}`.
    Brace(char),
    Var(&'a str),
}

/// Splits `template` into pieces; any placeholder not in `known`, a lone
/// `{` or `}` is an error.
fn parse_template<'a>(template: &'a str, known: &[&str]) -> Result<Vec<Piece<'a>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push(Piece::Brace('{'));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push(Piece::Brace('}'));
            rest = after;
        } else if tail.starts_with('}') {
            return Err(format!(
                "`{template}`: lone `}}` (write `}}}}` for a brace)"
            ));
        } else {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("`{template}`: `{{` without `}}`"))?;
            let name = &tail[1..end];
            if !known.contains(&name) {
                let list: Vec<String> = known.iter().map(|k| format!("{{{k}}}")).collect();
                return Err(format!(
                    "unknown placeholder `{{{name}}}` (known: {}; `{{{{` for a brace)",
                    list.join(", ")
                ));
            }
            out.push(Piece::Var(name));
            rest = &tail[end + 1..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Checks a message template on its own (`otpgate check`, tests).
pub fn check_template(template: &str) -> Result<(), String> {
    parse_template(template, &TEMPLATE_PLACEHOLDERS).map(|_| ())
}

/// The values placeholders stand for.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub code: &'a str,
    pub user: &'a str,
    pub host: &'a str,
    pub service: &'a str,
    pub minutes: u32,
    /// `{to}` in command arguments.
    pub to: &'a str,
}

/// Renders a template that passed validation. Values are made safe for a
/// message: control characters become `?`, so a host or service name can
/// never add a header line. (Unknown placeholders cannot occur after
/// validation; should one, it renders as nothing.)
pub fn render(template: &str, vars: &Vars<'_>) -> String {
    let known = ["code", "user", "host", "service", "minutes", "to"];
    let pieces = parse_template(template, &known).unwrap_or_default();
    let mut out = String::with_capacity(template.len() + 32);
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Brace(c) => out.push(c),
            Piece::Var(name) => {
                let minutes = vars.minutes.to_string();
                let value = match name {
                    "code" => vars.code,
                    "user" => vars.user,
                    "host" => vars.host,
                    "service" => vars.service,
                    "minutes" => &minutes,
                    "to" => vars.to,
                    _ => "",
                };
                out.extend(value.chars().map(|c| if c.is_control() { '?' } else { c }));
            }
        }
    }
    out
}

/// This machine's host name for `{host}` (the kernel's, no DNS).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Checks and normalizes an email address: one plausible `local@domain`,
/// printable ASCII without spaces, quotes, angle brackets, commas or line
/// breaks (nothing that could end a header or add a recipient), not
/// starting with `-` (it may be a command argument), at most 254 bytes.
pub fn normalize_email(address: &str) -> Result<String, String> {
    let a = address.trim();
    let bad = |why: &str| {
        Err(format!(
            "`{}` is not an email address: {why}",
            a.escape_debug()
        ))
    };
    if a.is_empty() || a.len() > 254 {
        return bad("empty or longer than 254 bytes");
    }
    if a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("spaces or control characters (line breaks) are not allowed");
    }
    let Some((local, domain)) = a.split_once('@') else {
        return bad("no `@`");
    };
    if local.is_empty() || local.len() > 64 || local.starts_with(['-', '.']) {
        return bad("bad part before `@`");
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    if !local_ok || local.contains("..") || local.ends_with('.') {
        return bad("bad characters before `@`");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = !domain.is_empty()
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !domain_ok {
        return bad("bad domain after `@`");
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// Checks and normalizes a phone number to E.164: `+`, then 8 to 15
/// digits, the first not 0. Spaces, dashes, dots and parentheses typed for
/// readability are dropped.
pub fn normalize_number(number: &str) -> Result<String, String> {
    let kept: String = number
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let bad = || {
        Err(format!(
            "`{}` is not a phone number in international form (+ country code and number, \
             e.g. +441632960961)",
            number.escape_debug()
        ))
    };
    let Some(digits) = kept.strip_prefix('+') else {
        return bad();
    };
    if !(8..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return bad();
    }
    Ok(kept)
}

/// What a user sees of a destination: `a***@example.org`, `+44*******961`.
pub fn mask(kind: Kind, destination: &str) -> String {
    match kind {
        Kind::Email => match destination.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".into(),
        },
        Kind::Sms => {
            let chars: Vec<char> = destination.chars().collect();
            if chars.len() < 7 {
                return "***".into();
            }
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[chars.len() - 3..].iter().collect();
            format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            code: "123456",
            user: "alice",
            host: "gate",
            service: "sshd",
            minutes: 10,
            to: "alice@example.org",
        }
    }

    #[test]
    fn a_template_renders_every_placeholder_and_escaped_braces() {
        let t = "{code} for {user}@{host} via {service}, {minutes} min {{literal}}";
        check_template(t).unwrap();
        assert_eq!(
            render(t, &vars()),
            "123456 for alice@gate via sshd, 10 min {literal}"
        );
    }

    #[test]
    fn rendered_values_cannot_break_lines() {
        let v = Vars {
            host: "evil\r\nBcc: victim@example.org",
            ..vars()
        };
        let out = render("Subject: code for {host}", &v);
        assert!(!out.contains('\n') && !out.contains('\r'), "{out}");
    }

    #[test]
    fn unknown_placeholders_and_lone_braces_are_errors() {
        for (t, needle) in [
            ("{code} {password}", "unknown placeholder `{password}`"),
            ("{code", "without"),
            ("code}", "lone"),
            ("{}", "unknown placeholder `{}`"),
        ] {
            let err = check_template(t).unwrap_err();
            assert!(err.contains(needle), "{t}: {err}");
        }
    }

    #[test]
    fn email_addresses_that_could_inject_headers_are_refused() {
        assert_eq!(
            normalize_email(" Alice.B+otp@Example.ORG ").unwrap(),
            "Alice.B+otp@example.org"
        );
        for bad in [
            "alice@example.org\r\nBcc: victim@example.org",
            "alice@example.org\nX: y",
            "alice@example.org, bob@example.org",
            "Alice <alice@example.org>",
            "alice example@example.org",
            "-oQ/tmp@example.org",
            "alice",
            "alice@",
            "@example.org",
            "a@b@c",
            "alice@exa_mple.org",
            "alice@-example.org",
            "\"a\"@example.org",
            "",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert_eq!(
            normalize_number("+44 (1632) 960-961").unwrap(),
            "+441632960961"
        );
        for bad in [
            "01632960961",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "+44 1632 96096x",
            "+44\n1632960961",
            "-1632960961",
        ] {
            assert!(normalize_number(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn destinations_are_masked_for_display() {
        assert_eq!(mask(Kind::Email, "alice@example.org"), "a***@example.org");
        assert_eq!(mask(Kind::Sms, "+441632960961"), "+44*******961");
    }

    fn channels(text: &str) -> Result<Channels, String> {
        let c: Channels = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate("config.toml").map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn channel_config_is_validated_with_the_key() {
        channels("[email]\n").unwrap();
        channels("[sms]\ncommand = [\"/usr/local/bin/sms\", \"{to}\"]\n").unwrap();
        for (text, needle) in [
            ("[sms]\n", "channels.sms.command"),
            ("[email]\ncommand = [\"sendmail\"]\n", "absolute"),
            (
                "[email]\ncommand = [\"/usr/sbin/sendmail\", \"{code}\"]\n",
                "standard input",
            ),
            ("[email]\nrun_as = \"root\"\n", "channels.email.run_as"),
            ("[email]\nrun_as = \"\"\n", "run_as"),
            ("[email]\nrun_as = \"a b\"\n", "run_as"),
            ("[email]\ntemplate = \"no code here\"\n", "{code}"),
            ("[email]\ntemplate = \"{code} {pin}\"\n", "{pin}"),
            (
                "[email]\nsubject = \"a\\nBcc: x\"\n",
                "channels.email.subject",
            ),
            ("[email]\nsubject = \"{secret}\"\n", "{secret}"),
            (
                "[email]\nfrom = \"a@b\\r\\nBcc: x\"\n",
                "channels.email.from",
            ),
            ("[email]\ncode_digits = 5\n", "channels.email.code_digits"),
            ("[email]\ncode_digits = 9\n", "code_digits"),
            ("[email]\ncode_lifetime = 0\n", "code_lifetime"),
            ("[email]\ntimeout = 0\n", "timeout"),
            ("[email]\nmax_sends_per_hour = 0\n", "max_sends_per_hour"),
            ("verification_time = 5\n", "verification_time"),
            ("[email]\ncolour = 1\n", "colour"),
            ("[sms]\ncommand = [\"/x\"]\nfrom = \"a@b\"\n", "from"),
            ("[fax]\n", "fax"),
        ] {
            let err = channels(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
