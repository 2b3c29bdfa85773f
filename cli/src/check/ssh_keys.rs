//! SSH keys in `otpgate check` (issue #17, part 2): what sshd must tell
//! the module for `policy.trusted_ssh_keys` and for remembered hosts bound
//! to a key, said next to the sshd_config checks.
//!
//! The module reads the key sshd reports in `SSH_AUTH_INFO_0` before
//! keyboard-interactive (`config/src/ssh_auth.rs`). A key is reported only
//! when `publickey` passed before `keyboard-interactive` in the same
//! `AuthenticationMethods` list. OpenSSH 9.2 (Debian 12) reports it whatever
//! `ExposeAuthInfo` says (tests/tests/sshd.rs proves it); an sshd that
//! reported it only with `ExposeAuthInfo yes` would leave keys uncounted
//! (the code is asked) and remembered hosts bound to the address only.

use std::path::Path;

use otpgate_config::SystemConfig;
use otpgate_config::args::Args;

use super::{Report, Service, Severity, Sshd, place};

/// The findings and the summary line about SSH keys, for the sshd service
/// and its effective config (`base` with the sshd line's overrides).
pub(super) fn check(
    sshd: &Sshd,
    path: &Path,
    service: &Service,
    base: &SystemConfig,
    lists: &[Vec<String>],
    report: &mut Report,
) {
    let overrides = Args::parse(&service.otpgate.args).overrides;
    let config = base
        .with_overrides(&overrides)
        .unwrap_or_else(|_| base.clone());
    let rules = &config.policy.trusted_ssh_keys;
    let remember = config.remember_days > 0;
    if rules.is_empty() && !remember {
        return;
    }
    let key_first = lists.iter().any(|l| key_before_code(l));
    if !rules.is_empty() && !key_first {
        report.add(
            Severity::Warning,
            Some(place(sshd.get("authenticationmethods"), path)),
            format!(
                "policy.trusted_ssh_keys is set, but no AuthenticationMethods list has publickey \
                 before keyboard-interactive: sshd has no key to report when the code is asked, \
                 so no key ever counts (use `AuthenticationMethods publickey,keyboard-interactive`; \
                 keys listed: {})",
                rules.join(", ")
            ),
        );
    }
    let expose = sshd
        .get("exposeauthinfo")
        .is_some_and(|(v, _, _)| v.eq_ignore_ascii_case("yes"));
    if !expose {
        report.add(
            Severity::Note,
            Some(place(sshd.get("exposeauthinfo"), path)),
            "ExposeAuthInfo is not yes. The module matches SSH keys (policy.trusted_ssh_keys, \
             remembered hosts bound to a key) against the key sshd reports to PAM in \
             SSH_AUTH_INFO_0; OpenSSH 9.2 reports it whatever ExposeAuthInfo says, but an sshd \
             that reported it only with `ExposeAuthInfo yes` would count no key (the code is \
             asked) and bind remembered hosts to the address only. Setting it is harmless \
             (sessions also get SSH_USER_AUTH)",
        );
    }
    let mut said = Vec::new();
    if !rules.is_empty() && key_first {
        said.push(format!(
            "a login whose one key is in policy.trusted_ssh_keys ({}) skips the code (method \
             ssh-key)",
            rules.join(", ")
        ));
    }
    if remember {
        said.push(
            "a remembered host is bound to the key of the login that trusted it, when it used \
             one"
            .to_string(),
        );
    }
    if !said.is_empty() {
        report
            .at_login
            .push(format!("SSH keys: {}.", said.join("; ")));
    }
}

/// True when `publickey` comes before `keyboard-interactive` in `list`.
fn key_before_code(list: &[String]) -> bool {
    let code = list.iter().position(|m| m == "keyboard-interactive");
    let key = list.iter().position(|m| m == "publickey");
    matches!((key, code), (Some(k), Some(c)) if k < c)
}

#[cfg(test)]
mod tests {
    use super::key_before_code;

    fn list(text: &str) -> Vec<String> {
        text.split(',').map(str::to_string).collect()
    }

    #[test]
    fn a_key_counts_only_when_it_passed_before_the_code() {
        assert!(key_before_code(&list("publickey,keyboard-interactive")));
        assert!(key_before_code(&list(
            "password,publickey,keyboard-interactive"
        )));
        assert!(!key_before_code(&list("keyboard-interactive,publickey")));
        assert!(!key_before_code(&list("keyboard-interactive")));
        assert!(!key_before_code(&list("publickey")));
    }
}
