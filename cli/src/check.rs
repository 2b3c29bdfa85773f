//! `otpgate check`: reads the system config, the pam.d files that load
//! `pam_otpgate.so` and `sshd_config`, and says in plain words what will
//! happen at login and what is wrong. The most common way to lock oneself
//! out (or to think one is protected when one is not) is a wrong pair of
//! pam.d and sshd_config lines; this command names them with file:line.
//!
//! It reads only; it needs root only for files root alone can read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use otpgate_config::SystemConfig;
use otpgate_config::args::{self, ArgError, Args};
use otpgate_config::channel::DEFAULT_RUN_AS;
use otpgate_config::system::{DEFAULT_PATH, LocalConsole, Require};
use serde::Serialize;

use crate::cli::CheckArgs;

mod effective;
mod ssh_keys;
use crate::error::{CliError, Result};
use crate::output;

/// The module's file name.
const MODULE: &str = "pam_otpgate.so";
/// Modules that ask for (or check) a password.
const PASSWORD_MODULES: &[&str] = &[
    "pam_unix.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_krb5.so",
    "pam_winbind.so",
    "pam_userdb.so",
    "pam_pwdb.so",
];
/// Where distributions keep PAM modules, for bare module names.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security",
    "/usr/lib64/security",
    "/lib64/security",
    "/usr/lib/security",
    "/lib/security",
];
/// Include depth limit (pam.d and sshd_config), against loops.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Serialize)]
struct ServiceJson {
    name: String,
    file: String,
    line: usize,
    control: String,
    arguments: Vec<String>,
    password_before_code: bool,
    code_before_password: bool,
}

#[derive(Debug, Serialize)]
struct ReportJson<'a> {
    ok: bool,
    config: String,
    services: Vec<ServiceJson>,
    at_login: &'a [String],
    findings: &'a [Finding],
}

/// Collects findings and the plain-words summary.
#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
    at_login: Vec<String>,
}

impl Report {
    fn add(&mut self, severity: Severity, at: Option<(&Path, usize)>, message: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            file: at.map(|(p, _)| p.display().to_string()),
            line: at.map(|(_, l)| l).filter(|l| *l > 0),
            message: message.into(),
        });
    }
    fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .count()
    }
}

// ---------------------------------------------------------------- pam.d

/// One module line of a pam.d file, after includes are followed.
#[derive(Debug, Clone)]
struct PamLine {
    file: PathBuf,
    line: usize,
    kind: String,
    control: String,
    module: String,
    args: Vec<String>,
    /// The `@include`, `include` and `substack` lines that led here from
    /// the service's file, outermost first (`file:line: text`).
    via: Vec<String>,
}

impl PamLine {
    fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }
    fn is_otpgate(&self) -> bool {
        self.module_name() == MODULE
    }
    fn asks_password(&self) -> bool {
        PASSWORD_MODULES.contains(&self.module_name())
    }
    fn at(&self) -> Option<(&Path, usize)> {
        Some((&self.file, self.line))
    }
    /// `file:line`, and how the service's file reaches it.
    fn place(&self) -> String {
        let mut out = format!("{}:{}", self.file.display(), self.line);
        if !self.via.is_empty() {
            out.push_str(&format!(" (through {})", self.via.join(", then ")));
        }
        out
    }
}

/// Logical lines (continuations joined, comments dropped) with their
/// first line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let without_comment = raw.split('#').next().unwrap_or("");
        let (n, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(stripped) = without_comment.strip_suffix('\\') {
            acc.push_str(stripped);
            acc.push(' ');
            pending = Some((n, acc));
            continue;
        }
        acc.push_str(without_comment);
        if !acc.trim().is_empty() {
            out.push((n, acc.trim().to_string()));
        }
    }
    if let Some((n, acc)) = pending
        && !acc.trim().is_empty()
    {
        out.push((n, acc.trim().to_string()));
    }
    out
}

/// Splits a pam.d line into words; `[...]` (control) is one word.
fn pam_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '[' => {
                depth += 1;
                current.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The module lines of `file` of type `only` (all types when `None`),
/// includes and substacks followed.
fn expand(
    dir: &Path,
    file: &Path,
    only: Option<&str>,
    depth: usize,
    report: &mut Report,
) -> Vec<PamLine> {
    let mut out = Vec::new();
    if depth > MAX_DEPTH {
        report.add(
            Severity::Warning,
            Some((file, 0)),
            "includes nest too deep (a loop?); not followed further",
        );
        return out;
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        report.add(
            Severity::Error,
            Some((file, 0)),
            "included but cannot be read: PAM fails every login through it",
        );
        return out;
    };
    let resolve = |name: &str| {
        if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            dir.join(name)
        }
    };
    for (n, line) in logical_lines(&text) {
        let words = pam_words(&line);
        if words[0] == "@include" {
            if let Some(target) = words.get(1) {
                let lines = expand(dir, &resolve(target), only, depth + 1, report);
                out.extend(through(lines, file, n, &line));
            }
            continue;
        }
        if words.len() < 3 {
            continue;
        }
        let kind = words[0].trim_start_matches('-').to_ascii_lowercase();
        if only.is_some_and(|k| k != kind) {
            continue;
        }
        if words[1] == "include" || words[1] == "substack" {
            let lines = expand(dir, &resolve(&words[2]), Some(&kind), depth + 1, report);
            out.extend(through(lines, file, n, &line));
            continue;
        }
        out.push(PamLine {
            file: file.to_path_buf(),
            line: n,
            kind,
            control: words[1].clone(),
            module: words[2].clone(),
            args: words[3..].to_vec(),
            via: Vec::new(),
        });
    }
    out
}

/// The lines an include (`text`, at `file`:`n`) brought in, marked with
/// where they came from.
fn through(lines: Vec<PamLine>, file: &Path, n: usize, text: &str) -> Vec<PamLine> {
    let step = format!("`{text}` at {}:{n}", file.display());
    lines
        .into_iter()
        .map(|mut l| {
            l.via.insert(0, step.clone());
            l
        })
        .collect()
}

/// The pam.d services (file names) in `dir`, sorted.
fn services(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !n.ends_with('~') && !n.ends_with(".dpkg-old"))
        .collect();
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------- sshd_config

/// The sshd settings that matter here: the first value of each keyword
/// outside `Match` blocks (sshd keeps the first one), and the keywords a
/// `Match` block changes.
#[derive(Debug, Default)]
struct Sshd {
    values: HashMap<String, (String, PathBuf, usize)>,
    in_match: Vec<MatchSetting>,
}

/// A `Match` line: its criteria (`User deploy`) and where it is.
#[derive(Debug, Clone)]
struct MatchBlock {
    criteria: String,
    file: PathBuf,
    line: usize,
}

/// A keyword of [`SSHD_KEYS`] set inside a `Match` block.
#[derive(Debug)]
struct MatchSetting {
    /// The keyword in lower case; `written` as in the file.
    key: String,
    written: String,
    value: String,
    file: PathBuf,
    line: usize,
    block: MatchBlock,
}

const SSHD_KEYS: &[&str] = &[
    "usepam",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
    "authenticationmethods",
    "passwordauthentication",
    "pubkeyauthentication",
    "exposeauthinfo",
];

impl Sshd {
    fn get(&self, key: &str) -> Option<&(String, PathBuf, usize)> {
        self.values.get(key)
    }
    fn yes(&self, key: &str, default: bool) -> bool {
        self.get(key)
            .map_or(default, |(v, _, _)| v.eq_ignore_ascii_case("yes"))
    }
}

/// Matches `name` against a glob pattern with `*` and `?`.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(c)) if p == c => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// The files an `Include` pattern names (glob in the last component).
fn include_files(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let path = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| glob_match(name.as_bytes(), e.file_name().as_encoded_bytes()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// A `sshd_config` line's keyword (as written) and value (`Key value`,
/// `Key=value`, quotes dropped).
fn keyword_and_value(line: &str) -> (String, String) {
    let (key, value) = match line.find(|c: char| c.is_whitespace() || c == '=') {
        Some(at) => (
            &line[..at],
            line[at..].trim_start_matches(|c: char| c.is_whitespace() || c == '='),
        ),
        None => (line, ""),
    };
    (key.to_string(), value.trim().trim_matches('"').to_string())
}

fn parse_sshd(
    file: &Path,
    base: &Path,
    in_match: Option<MatchBlock>,
    depth: usize,
    sshd: &mut Sshd,
    report: &mut Report,
) -> std::io::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let mut in_match = in_match;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (written, value) = keyword_and_value(line);
        let key = written.to_ascii_lowercase();
        match key.as_str() {
            "match" => {
                in_match = Some(MatchBlock {
                    criteria: value,
                    file: file.to_path_buf(),
                    line: i + 1,
                })
            }
            "include" => {
                if depth >= MAX_DEPTH {
                    report.add(
                        Severity::Warning,
                        Some((file, i + 1)),
                        "Include nests too deep; not followed",
                    );
                    continue;
                }
                for pattern in value.split_whitespace() {
                    for included in include_files(base, pattern) {
                        if let Err(e) =
                            parse_sshd(&included, base, in_match.clone(), depth + 1, sshd, report)
                        {
                            report.add(
                                Severity::Warning,
                                Some((&included, 0)),
                                format!(
                                    "included by {}:{} but unreadable: {e}",
                                    file.display(),
                                    i + 1
                                ),
                            );
                        }
                    }
                }
            }
            k if SSHD_KEYS.contains(&k) => {
                if let Some(block) = &in_match {
                    sshd.in_match.push(MatchSetting {
                        key: key.clone(),
                        written,
                        value,
                        file: file.to_path_buf(),
                        line: i + 1,
                        block: block.clone(),
                    });
                } else {
                    sshd.values
                        .entry(key.clone())
                        .or_insert((value, file.to_path_buf(), i + 1));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- check

/// One service whose auth stack loads the module.
struct Service {
    name: String,
    otpgate: PamLine,
    /// Further lines of the same auth stack that load the module again.
    again: Vec<PamLine>,
    password_before: Option<PamLine>,
    password_after: Option<PamLine>,
}

/// Reads the system config; `None` when it is broken (reported).
fn check_config(path: &Path, required: bool, report: &mut Report) -> Option<SystemConfig> {
    match SystemConfig::load(path, required) {
        Ok(config) => {
            check_groups(&config, report);
            Some(config)
        }
        Err(e) => {
            // Parse, range and value errors carry the file and line.
            let message = e.to_string();
            report.add(
                Severity::Error,
                None,
                format!("{message} — the module denies every login that reaches it (fails closed)"),
            );
            None
        }
    }
}

/// Policy groups that do not resolve: a required one then requires a
/// second factor of everyone (the module cannot tell a typo from a
/// directory service that is down), an exempt one exempts nobody.
fn check_groups(config: &SystemConfig, report: &mut Report) {
    let p = &config.policy;
    let missing = |g: &&String| !matches!(nix::unistd::Group::from_name(g), Ok(Some(_)));
    for group in p.require_groups.iter().filter(missing) {
        report.add(
            Severity::Warning,
            None,
            format!(
                "policy.require_groups: group `{group}` is not found; the module then requires a second factor of every user (fails closed)"
            ),
        );
    }
    for group in p.exempt_groups.iter().filter(missing) {
        report.add(
            Severity::Warning,
            None,
            format!("policy.exempt_groups: group `{group}` is not found; it exempts nobody"),
        );
    }
    effective::check_override_groups(config, report);
}

/// Checks the arguments of one module line with the module's own parser;
/// returns the effective config.
fn check_arguments(
    line: &PamLine,
    base: Option<&SystemConfig>,
    report: &mut Report,
) -> Option<SystemConfig> {
    let args = parse_arguments(line, report);
    let loaded;
    let config = if args.config_required {
        loaded = load_argument_config(line, &args.config, report);
        loaded.as_ref()?
    } else {
        base?
    };
    apply_overrides(line, config, &args.overrides, report)
}

/// Parses the words of `line` as the module does, reporting each wrong one
/// in order. The panic hook of debug builds is reported whatever this
/// command's build, since a release module denies it.
fn parse_arguments(line: &PamLine, report: &mut Report) -> Args {
    let mut args = Args::default();
    for arg in &line.args {
        if args::is_debug_panic_arg(arg) {
            report.add(
                Severity::Error,
                line.at(),
                format!(
                    "`{arg}` is a test hook of debug builds: a release module denies every login"
                ),
            );
            continue;
        }
        args.add(arg);
        for e in std::mem::take(&mut args.errors) {
            report.add(Severity::Error, line.at(), argument_error(&e));
        }
    }
    args
}

/// What `check` says about an argument the module refuses.
fn argument_error(e: &ArgError) -> String {
    match e {
        ArgError::Unknown(arg) => format!(
            "unknown argument `{arg}`: the module denies every login on this line \
             (flags: {}; or KEY=VALUE with a config key)",
            args::flag_names().collect::<Vec<_>>().join(", ")
        ),
        ArgError::RelativePath { arg, .. } => {
            format!("`{arg}`: the path must be absolute; the module denies every login")
        }
        other => format!("{other}: the module denies every login on this line"),
    }
}

/// Loads the config a `config=` argument names; its findings are prefixed
/// with the argument and the line.
fn load_argument_config(line: &PamLine, path: &Path, report: &mut Report) -> Option<SystemConfig> {
    let mut sub = Report::default();
    let loaded = check_config(path, true, &mut sub);
    for mut f in sub.findings {
        f.message = format!(
            "config={} ({}:{}): {}",
            path.display(),
            line.file.display(),
            line.line,
            f.message
        );
        report.findings.push(f);
    }
    loaded
}

/// `config` with the line's overrides; `None` when one is wrong.
fn apply_overrides(
    line: &PamLine,
    config: &SystemConfig,
    overrides: &[String],
    report: &mut Report,
) -> Option<SystemConfig> {
    // Each override alone, so that every bad one is named.
    let mut bad = false;
    for o in overrides {
        if let Err(e) = config.with_overrides(std::slice::from_ref(o)) {
            bad = true;
            report.add(
                Severity::Error,
                line.at(),
                format!("argument `{o}`: {e}; the module denies every login on this line"),
            );
        }
    }
    if bad {
        return None;
    }
    config.with_overrides(overrides).ok()
}

/// Plain words for what the policy does to users without an enrollment.
fn policy_words(config: &SystemConfig, line: &PamLine, service: &str) -> Vec<String> {
    let mut out = Vec::new();
    let nullok = line.args.iter().any(|a| a == "nullok");
    let p = &config.policy;
    match p.require {
        Require::Enrolled => out.push(format!(
            "users who have not enrolled log in without a code{}",
            if nullok { " (nullok)" } else { " (policy.require = \"enrolled\")" }
        )),
        Require::All => out.push(
            "users who have not enrolled are denied (policy.require = \"all\"): check `otpgate status --user NAME` for every user first".into(),
        ),
    }
    if !p.require_groups.is_empty() && p.require == Require::Enrolled {
        out.push(format!(
            "members of {} are denied until they enroll",
            p.require_groups.join(", ")
        ));
    }
    if !p.exempt_groups.is_empty() {
        out.push(format!(
            "members of {} never get asked for a code",
            p.exempt_groups.join(", ")
        ));
    }
    out.extend(effective::summary(config, service));
    let remote = has_remote_host(service);
    if !config.trusted_networks.is_empty() && remote != Some(false) {
        out.push(format!(
            "logins from {} skip the code",
            config.trusted_networks.join(", ")
        ));
    }
    if config.local_console == LocalConsole::Skip {
        out.push("logins without a remote host on a console, serial line or local display (the console) skip the code".into());
    }
    match (config.remember_days, remote) {
        (0, _) => {}
        // Trust is offered for a remote host only: su and sudo have none.
        (_, Some(false)) => out.push(format!(
            "remembered hosts never apply ({service} logins have no remote host)"
        )),
        (days, _) => out.push(format!(
            "after a right code a user may trust the host they come from for {days} days"
        )),
    }
    out
}

/// Whether logins through `service` come with a remote host (`PAM_RHOST`),
/// which trusted networks and remembered hosts need: `Some(false)` for the
/// local services (su, sudo, login and their kin), `Some(true)` for sshd,
/// `None` when the service does not say.
fn has_remote_host(service: &str) -> Option<bool> {
    const LOCAL: &[&str] = &[
        "su",
        "su-l",
        "sudo",
        "sudo-i",
        "login",
        "runuser",
        "runuser-l",
        "polkit-1",
    ];
    if LOCAL.contains(&service) {
        Some(false)
    } else if service == "sshd" {
        Some(true)
    } else {
        None
    }
}

fn check_module_file(line: &PamLine, report: &mut Report) {
    let exists = if line.module.starts_with('/') {
        Path::new(&line.module).exists()
    } else {
        MODULE_DIRS
            .iter()
            .any(|d| Path::new(d).join(&line.module).exists())
    };
    if !exists {
        let effect = match line.control.as_str() {
            "optional" => "PAM skips the line",
            _ => "PAM fails every login through this stack",
        };
        report.add(
            Severity::Error,
            line.at(),
            format!(
                "{} is not installed (looked in {}): {effect}",
                line.module,
                if line.module.starts_with('/') {
                    "that path".to_string()
                } else {
                    MODULE_DIRS.join(", ")
                }
            ),
        );
    }
}

/// Runs every check; the report and the services found.
fn inspect(config_path: &Path, config_required: bool, args: &CheckArgs) -> (Report, Vec<Service>) {
    let mut report = Report::default();
    let config = check_config(config_path, config_required, &mut report);
    if config.is_some() {
        let exists = config_path.exists();
        report.at_login.push(format!(
            "System config {}: {}.",
            config_path.display(),
            if exists {
                "valid"
            } else {
                "absent, every default holds"
            }
        ));
    }

    if let Some(config) = &config {
        check_channels(config, &mut report);
        check_store(config, &mut report);
    }

    let found = find_services(&args.pam_dir, &mut report);
    for service in &found {
        check_service(service, config.as_ref(), &mut report);
    }
    check_sshd(args, &found, config.as_ref(), &mut report);
    (report, found)
}

/// The services in `dir` whose auth stack loads the module; an error when
/// there is none.
fn find_services(dir: &Path, report: &mut Report) -> Vec<Service> {
    let names = match services(dir) {
        Ok(n) => n,
        Err(e) => {
            report.add(
                Severity::Error,
                Some((dir, 0)),
                format!("cannot list the PAM services: {e}"),
            );
            Vec::new()
        }
    };
    let found: Vec<Service> = names
        .iter()
        .filter_map(|name| service(dir, name, report))
        .collect();
    if found.is_empty() {
        report.add(
            Severity::Error,
            Some((dir, 0)),
            format!(
                "{MODULE} is not in the auth stack of any service in {}: no login asks for a code",
                dir.display()
            ),
        );
    }
    found
}

/// Service `name` when its auth stack loads the module. Findings of files
/// that do not load it are dropped: they are none of this command's business.
fn service(dir: &Path, name: &str, report: &mut Report) -> Option<Service> {
    let mut sub = Report::default();
    let all = expand(dir, &dir.join(name), None, 0, &mut sub);
    if !all.iter().any(PamLine::is_otpgate) {
        return None;
    }
    report.findings.extend(sub.findings);
    for line in all.iter().filter(|l| l.is_otpgate() && l.kind != "auth") {
        report.add(
            Severity::Warning,
            line.at(),
            format!(
                "{MODULE} on a `{}` line does nothing useful: it only authenticates (use `auth`)",
                line.kind
            ),
        );
    }
    let stack: Vec<PamLine> = all.into_iter().filter(|l| l.kind == "auth").collect();
    let pos = stack.iter().position(PamLine::is_otpgate)?;
    Some(Service {
        name: name.to_string(),
        otpgate: stack[pos].clone(),
        again: stack[pos + 1..]
            .iter()
            .filter(|l| l.is_otpgate())
            .cloned()
            .collect(),
        password_before: stack[..pos].iter().find(|l| l.asks_password()).cloned(),
        password_after: stack[pos + 1..].iter().find(|l| l.asks_password()).cloned(),
    })
}

/// Each configured channel: its command must be an executable file and its
/// `run_as` user must exist (and not be root), or no code can be sent.
/// With `store.kind = "daemon"`, whether otpgated answers on its socket:
/// while it does not, every login that needs a code is denied.
fn check_store(config: &SystemConfig, report: &mut Report) {
    use otpgate_config::system::StoreKind;
    if config.store.kind != StoreKind::Daemon {
        return;
    }
    if let Some(pg) = &config.daemon.postgres
        && pg.timeout >= config.store.timeout
    {
        report.add(
            Severity::Warning,
            None,
            format!(
                "daemon.postgres.timeout ({} s) is not below store.timeout ({} s): a login \
                 waiting on the database is cut off by the module first, and logged as \
                 \"no reply\" instead of the database's cause",
                pg.timeout, config.store.timeout
            ),
        );
    }
    let daemon = otpgate_config::remote::Daemon::new(config, "");
    match daemon.ping() {
        Ok(()) => report.at_login.push(format!(
            "Records are kept by otpgated at {}, which is running.",
            config.store.socket
        )),
        Err(e) => report.add(
            Severity::Error,
            None,
            format!(
                "store.kind = \"daemon\" but {e}: every login that needs a code is denied \
                 until otpgated serves (systemctl enable --now otpgated)"
            ),
        ),
    }
}

fn check_channels(config: &SystemConfig, report: &mut Report) {
    use std::os::unix::fs::PermissionsExt;
    for s in config.channels.enabled() {
        let name = format!("[channels.{}]", s.kind.as_str());
        let program = s.command.first().map(String::as_str).unwrap_or_default();
        match std::fs::metadata(program) {
            Err(e) => report.add(
                Severity::Error,
                None,
                format!("{name}: command {program}: {e} — no code can be sent by {}", s.kind.display()),
            ),
            Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => report.add(
                Severity::Error,
                None,
                format!(
                    "{name}: command {program} is not an executable file — no code can be sent by {}",
                    s.kind.display()
                ),
            ),
            Ok(_) => {}
        }
        match otpgate_config::Account::lookup(s.run_as) {
            Ok(a) if a.uid == 0 => report.add(
                Severity::Error,
                None,
                format!(
                    "{name}: run_as user {} has uid 0; the module refuses to send as root",
                    s.run_as
                ),
            ),
            Ok(a) => {
                let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
                for why in run_as_shared(s.run_as, a.uid, &passwd) {
                    report.add(
                        Severity::Warning,
                        None,
                        format!(
                            "{name}: run_as user {} {why}: other processes of that uid could \
                             reach the command and its message; use a dedicated system user \
                             (the default, {DEFAULT_RUN_AS})",
                            s.run_as
                        ),
                    );
                }
                report.at_login.push(format!(
                    "Codes by {} are sent with {} as {}.",
                    s.kind.display(),
                    s.command.join(" "),
                    s.run_as
                ))
            }
            Err(e) => report.add(
                Severity::Error,
                None,
                format!(
                    "{name}: run_as user {}: {e} — no code can be sent by {}; create it \
                     (`useradd --system --no-create-home --shell /usr/sbin/nologin {}`, as the \
                     packages do for {DEFAULT_RUN_AS})",
                    s.run_as,
                    s.kind.display(),
                    s.run_as
                ),
            ),
        }
    }
}

/// Why the `run_as` user `name` (uid `uid`) is shared with other
/// processes, from `passwd` (the `/etc/passwd` text; users only a directory
/// service knows are not seen): `nobody`/65534, a login shell, or a uid that
/// several entries have.
fn run_as_shared(name: &str, uid: u32, passwd: &str) -> Vec<String> {
    let mut why = Vec::new();
    if name == "nobody" || uid == 65534 {
        why.push("is nobody (uid 65534), which many services share".to_string());
    }
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<&str>>())
        .filter(|f| f.len() >= 7 && f[2].parse() == Ok(uid))
        .collect();
    if let Some(e) = entries.iter().find(|f| f[0] == name) {
        let shell = e[6].trim();
        let no_login = ["nologin", "false"]
            .iter()
            .any(|n| shell.rsplit('/').next() == Some(n));
        if !no_login {
            let shell = if shell.is_empty() { "/bin/sh" } else { shell };
            why.push(format!("has a login shell ({shell})"));
        }
    }
    if entries.len() > 1 {
        let names: Vec<&str> = entries.iter().map(|f| f[0]).collect();
        why.push(format!(
            "shares uid {uid} with other accounts ({})",
            names.join(", ")
        ));
    }
    why
}

/// The return values a `[value=action]` control may name (Linux-PAM's
/// `_pam_token_returns`), and `default`.
const CONTROL_VALUES: &[&str] = &[
    "success",
    "open_err",
    "symbol_err",
    "service_err",
    "system_err",
    "buf_err",
    "perm_denied",
    "auth_err",
    "cred_insufficient",
    "authinfo_unavail",
    "user_unknown",
    "maxtries",
    "new_authtok_reqd",
    "acct_expired",
    "session_err",
    "cred_unavail",
    "cred_expired",
    "cred_err",
    "no_module_data",
    "conv_err",
    "authtok_err",
    "authtok_recover_err",
    "authtok_lock_busy",
    "authtok_disable_aging",
    "try_again",
    "ignore",
    "abort",
    "authtok_expired",
    "module_unknown",
    "bad_item",
    "conv_again",
    "incomplete",
    "default",
];
/// The actions of a `[value=action]` control, besides a jump count.
const CONTROL_ACTIONS: &[&str] = &["ignore", "bad", "die", "ok", "done", "reset"];

/// What libpam makes of the module line's control word. A word it does not
/// know (`requird`), or a `[...]` with a pair it does not know, makes it
/// fail every login through the stack (`PAM_PERM_DENIED` from a broken
/// stack): an error, like the other mistakes that deny every login.
fn check_control(line: &PamLine, report: &mut Report) {
    let control = line.control.to_ascii_lowercase();
    match control.as_str() {
        "required" | "requisite" => {}
        "optional" => report.add(
            Severity::Warning,
            line.at(),
            "control `optional`: a wrong code does not stop the login when another module succeeds",
        ),
        "sufficient" => report.add(
            Severity::Warning,
            line.at(),
            "control `sufficient`: a right code ends the stack with success; the lines after it \
             (a password?) are not asked",
        ),
        _ => match bracket_control_error(&line.control) {
            None => report.add(
                Severity::Note,
                line.at(),
                format!(
                    "control `{}`: check by hand what a failure and PAM_IGNORE do here",
                    line.control
                ),
            ),
            Some(why) => report.add(
                Severity::Error,
                line.at(),
                format!(
                    "control `{}`: {why}: PAM fails every login through this stack; use \
                     `required` (or `requisite`)",
                    line.control
                ),
            ),
        },
    }
}

/// Why `control` is not a control libpam accepts; `None` for a well-formed
/// `[value=action ...]` (whose words, unlike the keywords, are case
/// sensitive).
fn bracket_control_error(control: &str) -> Option<String> {
    let Some(inner) = control.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else {
        return Some("not a PAM control word".into());
    };
    let pairs: Vec<&str> = inner.split_whitespace().collect();
    if pairs.is_empty() {
        return Some("an empty `[...]`".into());
    }
    for pair in pairs {
        let Some((value, action)) = pair.split_once('=') else {
            return Some(format!("`{pair}` is not value=action"));
        };
        if !CONTROL_VALUES.contains(&value) {
            return Some(format!("`{value}` is not a PAM return value"));
        }
        let jump = !action.is_empty() && action.bytes().all(|b| b.is_ascii_digit());
        if !jump && !CONTROL_ACTIONS.contains(&action) {
            return Some(format!("`{action}` is not a PAM action"));
        }
    }
    None
}

/// A stack that loads the module more than once (a service's own line plus
/// the pam-auth-update profile's in `common-auth`, say). The later lines ask
/// nothing once the first accepted a code for the user (docs/ARCHITECTURE.md
/// §2, step 2), so their arguments are never applied to that user, and each
/// is one more place to keep in step: a warning that names both lines and
/// the one to remove.
fn check_loaded_twice(service: &Service, report: &mut Report) {
    if service.again.is_empty() {
        return;
    }
    let lines: Vec<&PamLine> = std::iter::once(&service.otpgate)
        .chain(&service.again)
        .collect();
    let places: Vec<String> = lines.iter().map(|l| l.place()).collect();
    let own = lines.iter().find(|l| l.via.is_empty());
    let included = lines.iter().find(|l| !l.via.is_empty());
    let (at, advice) = match (own, included) {
        (Some(own), Some(included)) => {
            let covers = if included.file.file_name() == Some("common-auth".as_ref()) {
                " (the pam-auth-update profile, `pam-auth-update --enable otpgate`)"
            } else {
                ""
            };
            (
                own,
                format!(
                    "remove the line at {}:{}: the one at {}:{}{covers} already covers {}",
                    own.file.display(),
                    own.line,
                    included.file.display(),
                    included.line,
                    service.name
                ),
            )
        }
        _ => (&lines[1], "keep only one of them".to_string()),
    };
    report.add(
        Severity::Warning,
        at.at(),
        format!(
            "{}: the auth stack loads {MODULE} {} times: {}. A later line asks nothing once an \
             earlier one accepted a code (logged method=already-verified), so its arguments are \
             not applied to that user; {advice}",
            service.name,
            lines.len(),
            places.join(" and ")
        ),
    );
}

fn check_service(service: &Service, config: Option<&SystemConfig>, report: &mut Report) {
    let line = &service.otpgate;
    check_loaded_twice(service, report);
    for again in &service.again {
        // A later line's mistakes deny too: it reads its arguments and
        // config before it looks for an earlier success.
        check_module_file(again, report);
        check_arguments(again, config, report);
        check_control(again, report);
    }
    check_module_file(line, report);
    let effective = check_arguments(line, config, report);
    check_control(line, report);
    let forward = line.args.iter().any(|a| a == "forward_pass");
    let order = match (&service.password_before, &service.password_after) {
        (Some(p), _) => format!(
            "password ({} at {}:{}), then a verification code",
            p.module_name(),
            p.file.display(),
            p.line
        ),
        (None, Some(p)) if forward => format!(
            "one prompt for password and code (forward_pass), the password checked by {}",
            p.module_name()
        ),
        (None, Some(p)) => {
            report.add(
                Severity::Warning,
                line.at(),
                format!(
                    "the code is asked before the password ({} at {}:{}): anyone who knows a user \
                     name can try codes and lock the user out; put {MODULE} after the password",
                    p.module_name(),
                    p.file.display(),
                    p.line
                ),
            );
            "a verification code, then the password".to_string()
        }
        (None, None) => "a verification code only (no password module in this stack)".to_string(),
    };
    let mut words = vec![format!(
        "{}: asks for {order} ({}:{}, {}).",
        service.name,
        line.file.display(),
        line.line,
        line.control
    )];
    if let Some(config) = &effective {
        for w in policy_words(config, line, &service.name) {
            words.push(format!("  {}: {w}.", service.name));
        }
    }
    report.at_login.extend(words);
}

fn check_sshd(
    args: &CheckArgs,
    found: &[Service],
    config: Option<&SystemConfig>,
    report: &mut Report,
) {
    let path = &args.sshd_config;
    let Some(sshd) = read_sshd(path, report) else {
        return;
    };
    let Some(service) = found.iter().find(|s| s.name == "sshd") else {
        report_no_sshd_service(args, found, report);
        return;
    };
    let use_pam = check_use_pam(&sshd, path, report);
    let kbd = check_kbd_interactive(&sshd, report);
    let skipped = check_match_blocks(&sshd, report);
    if !(use_pam && kbd) {
        report
            .at_login
            .push("SSH: no code is asked (see the errors).".into());
        return;
    }
    let lists = method_lists(&sshd);
    if lists.is_empty() {
        check_without_methods(&sshd, path, service, report);
    } else {
        check_methods(&sshd, path, service, &lists, report);
    }
    if let Some(config) = config {
        ssh_keys::check(&sshd, path, service, config, &lists, report);
    }
    report.at_login.extend(skipped);
}

/// The settings of `Match` blocks: one that lets its connections in without
/// keyboard-interactive (an `AuthenticationMethods` list without it, or
/// `KbdInteractiveAuthentication no`) is a warning naming the criteria;
/// other settings there are a note. Returns the summary lines of the
/// blocks that skip the code.
fn check_match_blocks(sshd: &Sshd, report: &mut Report) -> Vec<String> {
    let mut summary = Vec::new();
    for m in &sshd.in_match {
        let criteria = &m.block.criteria;
        let Some(how) = match_skips_code(m) else {
            report.add(
                Severity::Note,
                Some((&m.file, m.line)),
                format!(
                    "the `Match {criteria}` block ({}:{}) sets {}: connections matching it \
                     follow other rules than these",
                    m.block.file.display(),
                    m.block.line,
                    m.written
                ),
            );
            continue;
        };
        report.add(
            Severity::Warning,
            Some((&m.file, m.line)),
            format!(
                "the `Match {criteria}` block ({}:{}) sets {} {}: connections matching \
                 `{criteria}` {how}, never asked for a code; add keyboard-interactive to each \
                 list there (e.g. `AuthenticationMethods publickey,keyboard-interactive`) or \
                 remove the line",
                m.block.file.display(),
                m.block.line,
                m.written,
                m.value
            ),
        );
        summary.push(format!(
            "SSH, connections matching `Match {criteria}`: {how}, never asked for a code (see \
             the warning)."
        ));
    }
    summary
}

/// How the connections of a `Match` setting get in without the code;
/// `None` when the setting does not let them.
fn match_skips_code(m: &MatchSetting) -> Option<String> {
    match m.key.as_str() {
        "authenticationmethods" if m.value.eq_ignore_ascii_case("any") => {
            Some("log in with any one method (a key alone)".into())
        }
        "authenticationmethods" => {
            let without: Vec<String> = parse_method_lists(&m.value)
                .iter()
                .filter(|l| !has_kbd(l))
                .map(|l| l.join(","))
                .collect();
            (!without.is_empty()).then(|| format!("log in with {} alone", without.join(" or ")))
        }
        "kbdinteractiveauthentication" | "challengeresponseauthentication"
            if !m.value.eq_ignore_ascii_case("yes") =>
        {
            Some("cannot be shown the code prompt".into())
        }
        _ => None,
    }
}

/// `sshd_config` and its includes; `None` (noted) when it cannot be read.
fn read_sshd(path: &Path, report: &mut Report) -> Option<Sshd> {
    let mut sshd = Sshd::default();
    let base = path.parent().unwrap_or(Path::new("/etc/ssh")).to_path_buf();
    if let Err(e) = parse_sshd(path, &base, None, 0, &mut sshd, report) {
        report.add(
            Severity::Note,
            Some((path, 0)),
            format!("not read ({e}): SSH is not checked"),
        );
        return None;
    }
    Some(sshd)
}

fn report_no_sshd_service(args: &CheckArgs, found: &[Service], report: &mut Report) {
    report.at_login.push(format!(
        "SSH: {} does not load {MODULE}: SSH logins are not asked for a code.",
        args.pam_dir.join("sshd").display()
    ));
    if !found.is_empty() {
        report.add(
            Severity::Note,
            Some((&args.sshd_config, 0)),
            format!("the sshd PAM service does not load {MODULE}: SSH logins ask for no code"),
        );
    }
}

/// Where a setting was read, or the top of `sshd_config` when it was not set.
fn place<'a>(entry: Option<&'a (String, PathBuf, usize)>, path: &'a Path) -> (&'a Path, usize) {
    entry.map_or((path, 0), |(_, p, l)| (p.as_path(), *l))
}

/// True when `UsePAM` is yes; an error otherwise.
fn check_use_pam(sshd: &Sshd, path: &Path, report: &mut Report) -> bool {
    if sshd.yes("usepam", false) {
        return true;
    }
    report.add(
        Severity::Error,
        Some(place(sshd.get("usepam"), path)),
        "UsePAM is not yes: sshd never runs the PAM stack, so SSH logins are never asked for a code",
    );
    false
}

/// True unless keyboard-interactive authentication is switched off (it is
/// on by default); an error when it is.
fn check_kbd_interactive(sshd: &Sshd, report: &mut Report) -> bool {
    let kbd = sshd
        .get("kbdinteractiveauthentication")
        .or(sshd.get("challengeresponseauthentication"));
    match kbd {
        Some((v, p, l)) if !v.eq_ignore_ascii_case("yes") => {
            report.add(
                Severity::Error,
                Some((p, *l)),
                "KbdInteractiveAuthentication (or ChallengeResponseAuthentication) is no: sshd cannot \
                 show the code prompt, so the code is never asked and enrolled users cannot log in \
                 with a password; set it to yes",
            );
            false
        }
        _ => true,
    }
}

/// The lists of `AuthenticationMethods` (method names without their
/// `:submethod`); empty when it is not set or `any`.
fn method_lists(sshd: &Sshd) -> Vec<Vec<String>> {
    sshd.get("authenticationmethods")
        .filter(|(v, _, _)| !v.eq_ignore_ascii_case("any"))
        .map(|(v, _, _)| parse_method_lists(v))
        .unwrap_or_default()
}

/// An `AuthenticationMethods` value as lists of method names.
fn parse_method_lists(value: &str) -> Vec<Vec<String>> {
    value
        .split_whitespace()
        .map(|list| {
            list.split(',')
                .map(|m| m.split(':').next().unwrap_or(m).to_string())
                .collect()
        })
        .collect()
}

fn has_kbd(list: &[String]) -> bool {
    list.iter().any(|m| m == "keyboard-interactive")
}

/// No `AuthenticationMethods`: sshd accepts any single method.
fn check_without_methods(sshd: &Sshd, path: &Path, service: &Service, report: &mut Report) {
    let pubkey = sshd.yes("pubkeyauthentication", true);
    let password = sshd.yes("passwordauthentication", true);
    if pubkey {
        report.add(
            Severity::Warning,
            Some((path, 0)),
            "AuthenticationMethods is not set: a login with a key alone skips PAM's auth stack \
             and is never asked for a code; set `AuthenticationMethods publickey,keyboard-interactive` \
             (key and code) or `keyboard-interactive`",
        );
    }
    if password {
        report.add(
            Severity::Note,
            Some((path, 0)),
            "PasswordAuthentication is yes: sshd's own password method also runs the PAM \
             stack but shows only one prompt, so enrolled users fail it and fall back to \
             keyboard-interactive; `PasswordAuthentication no` is cleaner",
        );
    }
    report.at_login.push(format!(
        "SSH: keyboard-interactive logins go through {}{}",
        service.name,
        if pubkey {
            "; key logins are not asked for a code."
        } else {
            "."
        }
    ));
}

/// `AuthenticationMethods` set: every list must hold keyboard-interactive.
fn check_methods(
    sshd: &Sshd,
    path: &Path,
    service: &Service,
    lists: &[Vec<String>],
    report: &mut Report,
) {
    let without: Vec<String> = lists
        .iter()
        .filter(|l| !has_kbd(l))
        .map(|l| l.join(","))
        .collect();
    if !without.is_empty() {
        report.add(
            Severity::Error,
            Some(place(sshd.get("authenticationmethods"), path)),
            format!(
                "AuthenticationMethods allows {} without keyboard-interactive: those logins are never asked for a code",
                without.join(" and ")
            ),
        );
    }
    let with: Vec<&Vec<String>> = lists.iter().filter(|l| has_kbd(l)).collect();
    let key_then_code = !with.is_empty() && with.iter().all(|l| l.iter().any(|m| m == "publickey"));
    if key_then_code {
        check_key_then_code(service, lists, report);
    }
    report
        .at_login
        .push(methods_summary(&with, &without, key_then_code));
}

/// The SSH summary line for `AuthenticationMethods`: what it says agrees
/// with the findings (lists without keyboard-interactive are named as
/// logins without a code, never hidden behind "a key, then the code").
fn methods_summary(with: &[&Vec<String>], without: &[String], key_then_code: bool) -> String {
    let asked = if with.is_empty() {
        None
    } else if key_then_code {
        Some("a key, then keyboard-interactive (the sshd PAM stack)")
    } else {
        Some("keyboard-interactive through the sshd PAM stack")
    };
    match (asked, without.is_empty()) {
        (Some(asked), true) => format!("SSH: {asked}."),
        (Some(asked), false) => format!(
            "SSH: {asked}; but {} alone is never asked for a code (see the error).",
            without.join(" or ")
        ),
        (None, _) => format!(
            "SSH: no code is asked: AuthenticationMethods allows only {} (see the error).",
            without.join(" or ")
        ),
    }
}

/// Key, then code: a password module left in the sshd stack asks for a
/// password as well.
fn check_key_then_code(service: &Service, lists: &[Vec<String>], report: &mut Report) {
    let Some(p) = service
        .password_before
        .as_ref()
        .or(service.password_after.as_ref())
    else {
        return;
    };
    report.add(
        Severity::Warning,
        Some((&p.file, p.line)),
        format!(
            "AuthenticationMethods {} asks for a key first, yet the sshd stack still asks \
             for the password ({}, e.g. through `@include common-auth`): comment that out \
             for key + code",
            lists
                .iter()
                .map(|l| l.join(","))
                .collect::<Vec<_>>()
                .join(" "),
            p.module_name()
        ),
    );
}

pub fn run(config: Option<&Path>, json: bool, user: Option<&str>, args: &CheckArgs) -> Result<()> {
    let (config_path, required) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    if let Some(service) = &args.service {
        let user = match user {
            Some(user) => user.to_string(),
            None => otpgate_config::Account::current()?.name,
        };
        return effective::run(&config_path, required, json, &user, service);
    }
    let (report, services) = inspect(&config_path, required, args);
    let problems = report.problems();
    if json {
        output::print_json(&ReportJson {
            ok: problems == 0,
            config: config_path.display().to_string(),
            services: services
                .iter()
                .map(|s| ServiceJson {
                    name: s.name.clone(),
                    file: s.otpgate.file.display().to_string(),
                    line: s.otpgate.line,
                    control: s.otpgate.control.clone(),
                    arguments: s.otpgate.args.clone(),
                    password_before_code: s.password_before.is_some(),
                    code_before_password: s.password_before.is_none() && s.password_after.is_some(),
                })
                .collect(),
            at_login: &report.at_login,
            findings: &report.findings,
        })?;
    } else {
        println!("What happens at login:");
        for line in &report.at_login {
            println!("  {line}");
        }
        if report.findings.is_empty() {
            println!("\nNo problems found.");
        } else {
            println!();
            for f in &report.findings {
                let place = match (&f.file, f.line) {
                    (Some(file), Some(line)) => format!("{file}:{line}: "),
                    (Some(file), None) => format!("{file}: "),
                    _ => String::new(),
                };
                let severity = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Note => "note",
                };
                println!("{severity}: {place}{}", f.message);
            }
        }
    }
    if problems > 0 {
        return Err(CliError::CheckFailed(problems));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::run_as_shared;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        otpgate-send:x:990:990::/nonexistent:/usr/sbin/nologin\n\
        mailer:x:991:991::/home/mailer:/bin/bash\n\
        twin-a:x:992:992::/:/usr/sbin/nologin\n\
        twin-b:x:992:992::/:/bin/false\n";

    #[test]
    fn a_dedicated_system_user_is_not_shared() {
        assert!(run_as_shared("otpgate-send", 990, PASSWD).is_empty());
    }

    #[test]
    fn nobody_a_login_shell_and_a_shared_uid_are_named() {
        let nobody = run_as_shared("nobody", 65534, PASSWD);
        assert!(nobody[0].contains("nobody (uid 65534)"), "{nobody:?}");
        let shell = run_as_shared("mailer", 991, PASSWD);
        assert_eq!(shell, ["has a login shell (/bin/bash)"]);
        let twin = run_as_shared("twin-a", 992, PASSWD);
        assert_eq!(
            twin,
            ["shares uid 992 with other accounts (twin-a, twin-b)"]
        );
    }
}
