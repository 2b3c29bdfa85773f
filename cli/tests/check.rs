//! `otpgate check` on temporary pam.d directories and sshd_config files:
//! one scenario per finding, each named for what the admin got wrong.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;
use otpgate_test_support::{need, require};

const COMMON_AUTH: &str = "\
# as Debian ships it
auth\t[success=1 default=ignore]\tpam_unix.so nullok
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
";
const GOOD_SSHD: &str = "@include common-auth\nauth required MODULE\n@include common-account\n";
const GOOD_SSHD_CONFIG: &str = "UsePAM yes\nKbdInteractiveAuthentication yes\n\
AuthenticationMethods keyboard-interactive\nPasswordAuthentication no\n";

struct Setup {
    dir: tempfile::TempDir,
    pam: PathBuf,
    sshd_config: PathBuf,
    config: PathBuf,
}

impl Setup {
    /// pam.d with common-auth, common-account and `sshd` (MODULE is
    /// replaced by a stand-in module file), sshd_config and a config.
    fn new(sshd_stack: &str, sshd_config: &str, config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pam = dir.path().join("pam.d");
        std::fs::create_dir(&pam).unwrap();
        let module = dir.path().join("security/pam_otpgate.so");
        std::fs::create_dir(module.parent().unwrap()).unwrap();
        std::fs::write(&module, b"stand-in").unwrap();
        std::fs::write(pam.join("common-auth"), COMMON_AUTH).unwrap();
        std::fs::write(pam.join("common-account"), "account required pam_unix.so\n").unwrap();
        let setup = Setup {
            sshd_config: dir.path().join("ssh/sshd_config"),
            config: dir.path().join("config.toml"),
            pam,
            dir,
        };
        setup.service("sshd", sshd_stack);
        std::fs::create_dir(setup.sshd_config.parent().unwrap()).unwrap();
        std::fs::write(&setup.sshd_config, sshd_config).unwrap();
        std::fs::write(&setup.config, config).unwrap();
        std::fs::set_permissions(&setup.config, std::fs::Permissions::from_mode(0o600)).unwrap();
        setup
    }

    fn module(&self) -> String {
        self.dir
            .path()
            .join("security/pam_otpgate.so")
            .display()
            .to_string()
    }

    fn service(&self, name: &str, stack: &str) {
        std::fs::write(self.pam.join(name), stack.replace("MODULE", &self.module())).unwrap();
    }

    fn check(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "--config",
            self.config.to_str().unwrap(),
            "check",
            "--pam-dir",
            self.pam.to_str().unwrap(),
            "--sshd-config",
            self.sshd_config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(BIN, &args, "")
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }
}

#[track_caller]
fn has(r: &Run, text: &str) {
    assert!(r.stdout.contains(text), "stdout lacks {text:?}\n{r}");
}

#[test]
fn password_then_code_over_keyboard_interactive_is_fine() {
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, "");
    s.service(
        "login",
        "@include common-auth\nauth required pam_otpgate.so\n",
    );
    let r = s.check(&[]);
    // login names the module without a path: not installed on this machine?
    if r.code != 0 {
        assert!(r.stdout.contains("pam_otpgate.so is not installed"), "{r}");
        std::fs::remove_file(s.pam.join("login")).unwrap();
    }
    let r = s.check(&[]);
    r.ok();
    has(&r, "No problems found.");
    has(&r, "sshd: asks for password (pam_unix.so at ");
    has(&r, "users who have not enrolled log in without a code");
    has(&r, "SSH: keyboard-interactive through the sshd PAM stack.");

    let j = s.check(&["--json"]);
    j.ok();
    let j = j.json();
    assert_eq!(j["ok"], true);
    assert_eq!(j["services"][0]["name"], "sshd");
    assert_eq!(j["services"][0]["line"], 2);
    assert_eq!(j["services"][0]["password_before_code"], true);
    assert_eq!(j["findings"].as_array().unwrap().len(), 0);
}

/// su and sudo have no remote host: check must not promise their users a
/// remembered host or a trusted network (sshd's users get both).
#[test]
fn remembered_hosts_and_trusted_networks_are_promised_only_where_there_is_a_remote_host() {
    let s = Setup::new(
        GOOD_SSHD,
        GOOD_SSHD_CONFIG,
        "remember_days = 7\ntrusted_networks = [\"10.0.0.0/8\"]\n",
    );
    let module = s.module();
    s.service(
        "su",
        &format!("auth required pam_unix.so\nauth required {module}\n"),
    );
    let r = s.check(&[]);
    has(
        &r,
        "sshd: after a right code a user may trust the host they come from for 7 days",
    );
    has(&r, "sshd: logins from 10.0.0.0/8 skip the code");
    has(
        &r,
        "su: remembered hosts never apply (su logins have no remote host)",
    );
    assert!(!r.stdout.contains("su: after a right code"), "{r}");
    assert!(!r.stdout.contains("su: logins from"), "{r}");
}

#[test]
fn no_service_loading_the_module_is_an_error() {
    let s = Setup::new("@include common-auth\n", GOOD_SSHD_CONFIG, "");
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(&r, "pam_otpgate.so is not in the auth stack of any service");
    assert!(r.stderr.contains("otpgate: check found 1 problem"), "{r}");
}

#[test]
fn keyboard_interactive_switched_off_in_an_included_file_means_no_code_is_ever_asked() {
    let s = Setup::new(
        GOOD_SSHD,
        "Include sshd_config.d/*.conf\nUsePAM yes\nKbdInteractiveAuthentication yes\n",
        "",
    );
    let d = s.dir.path().join("ssh/sshd_config.d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(
        d.join("10-debian.conf"),
        "# Debian\nKbdInteractiveAuthentication no\n",
    )
    .unwrap();
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        &format!(
            "error: {}:2: KbdInteractiveAuthentication (or ChallengeResponseAuthentication) is no",
            s.path("ssh/sshd_config.d/10-debian.conf")
        ),
    );
    has(&r, "SSH: no code is asked");

    // The old name does the same.
    let s = Setup::new(
        GOOD_SSHD,
        "UsePAM yes\nChallengeResponseAuthentication no\nAuthenticationMethods keyboard-interactive\n",
        "",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "sshd_config:2: KbdInteractiveAuthentication (or ChallengeResponseAuthentication) is no",
    );
}

/// Debian's stock sshd_config (its lines that are not comments), the
/// `Include` pointed at `dir`.
fn debian_stock_sshd_config(dir: &str) -> String {
    format!(
        "Include {dir}/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\n\
         PrintMotd no\nAcceptEnv LANG LC_*\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\n"
    )
}

/// The drop-in the packages ship, in Debian's stock setup: check agrees
/// that the code is asked; the same lines appended to the stock file are
/// the error they are.
#[test]
fn the_shipped_sshd_drop_in_under_debians_stock_config_asks_for_the_code() {
    let drop_in = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/examples/sshd_config.d/otpgate.conf"),
    )
    .unwrap();
    let s = Setup::new(GOOD_SSHD, "", "");
    let d = s.path("ssh/sshd_config.d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(&s.sshd_config, debian_stock_sshd_config(&d)).unwrap();
    std::fs::write(PathBuf::from(&d).join("otpgate.conf"), &drop_in).unwrap();
    let r = s.check(&[]);
    r.ok();
    has(&r, "SSH: keyboard-interactive through the sshd PAM stack.");

    std::fs::remove_file(PathBuf::from(&d).join("otpgate.conf")).unwrap();
    std::fs::write(
        &s.sshd_config,
        format!("{}{drop_in}", debian_stock_sshd_config(&d)),
    )
    .unwrap();
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "sshd_config:2: KbdInteractiveAuthentication (or ChallengeResponseAuthentication) is no",
    );
}

#[test]
fn sshd_without_pam_never_asks_for_a_code() {
    let s = Setup::new(
        GOOD_SSHD,
        "UsePAM no\nKbdInteractiveAuthentication yes\n",
        "",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(&r, "sshd_config:1: UsePAM is not yes");
}

#[test]
fn authentication_methods_without_keyboard_interactive_skip_the_code() {
    let s = Setup::new(
        GOOD_SSHD,
        "UsePAM yes\nKbdInteractiveAuthentication=yes\nAuthenticationMethods publickey keyboard-interactive\n",
        "",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "sshd_config:3: AuthenticationMethods allows publickey without keyboard-interactive",
    );

    // Not set at all: key logins skip PAM.
    let s = Setup::new(GOOD_SSHD, "UsePAM yes\n", "");
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "AuthenticationMethods is not set: a login with a key alone skips",
    );
}

#[test]
fn the_module_before_the_password_is_a_warning() {
    let s = Setup::new(
        "auth required MODULE\n@include common-auth\n",
        GOOD_SSHD_CONFIG,
        "",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        &format!(
            "warning: {}:1: the code is asked before the password",
            s.path("pam.d/sshd")
        ),
    );
    // Unless it is meant to: forward_pass takes both in one prompt.
    s.service(
        "sshd",
        "auth required MODULE forward_pass\n@include common-auth\n",
    );
    let r = s.check(&[]);
    r.ok();
    has(&r, "one prompt for password and code (forward_pass)");
}

#[test]
fn key_then_code_with_common_auth_still_included_asks_the_password_too() {
    let key_config = "UsePAM yes\nKbdInteractiveAuthentication yes\n\
        AuthenticationMethods publickey,keyboard-interactive\nPasswordAuthentication no\n";
    let s = Setup::new(GOOD_SSHD, key_config, "");
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        &format!(
            "warning: {}:2: AuthenticationMethods publickey,keyboard-interactive asks for a key first, yet the sshd stack still asks for the password",
            s.path("pam.d/common-auth")
        ),
    );
    // As the README says: comment out common-auth.
    s.service("sshd", "# @include common-auth\nauth required MODULE\n");
    let r = s.check(&[]);
    r.ok();
    has(&r, "sshd: asks for a verification code only");
    has(&r, "SSH: a key, then keyboard-interactive");
}

#[test]
fn unknown_and_invalid_module_arguments_are_errors() {
    let s = Setup::new(
        "@include common-auth\nauth required MODULE nullok bogus max_attempts=99 lockout_after=5 debug_panic_for_tests\n",
        GOOD_SSHD_CONFIG,
        "",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    let at = format!("error: {}:2: ", s.path("pam.d/sshd"));
    has(&r, &format!("{at}unknown argument `bogus`"));
    has(&r, &format!("{at}argument `max_attempts=99`"));
    has(&r, &format!("{at}`debug_panic_for_tests` is a test hook"));
    assert!(!r.stdout.contains("lockout_after=5"), "{r}");
    assert!(r.stderr.contains("check found 3 problems"), "{r}");

    // config= naming a missing file.
    s.service(
        "sshd",
        "@include common-auth\nauth required MODULE config=/nonexistent/otpgate.toml\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(&r, "config=/nonexistent/otpgate.toml");

    // Relative paths, refused by the module's parser as by the module.
    s.service(
        "sshd",
        "@include common-auth\nauth required MODULE syslog_socket=log.sock config=c.toml forward_pass\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        &format!("{at}`syslog_socket=log.sock`: the path must be absolute"),
    );
    has(
        &r,
        &format!("{at}`config=c.toml`: the path must be absolute"),
    );
    assert!(r.stderr.contains("check found 2 problems"), "{r}");
}

#[test]
fn a_broken_system_config_is_reported_with_file_and_line() {
    let s = Setup::new(
        GOOD_SSHD,
        GOOD_SSHD_CONFIG,
        "max_attempts = 3\nlockout_afterr = 5\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(&r, &format!("{}:2", s.config.display()));
    has(&r, "lockout_afterr");
    has(&r, "fails closed");

    let s = Setup::new(
        GOOD_SSHD,
        GOOD_SSHD_CONFIG,
        "issuer = \"x\"\nmax_attempts = 0\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(&r, &format!("{}:2: ", s.config.display()));
}

/// `echo 'remember_days = 7' >>` a config that ends in a table: check says
/// where the key landed and what to do, as the module's log line does.
#[test]
fn a_top_level_key_below_a_table_is_reported_with_the_table_and_the_fix() {
    let s = Setup::new(
        GOOD_SSHD,
        GOOD_SSHD_CONFIG,
        "max_attempts = 3\n[channels]\nverification_time = 600\nremember_days = 7\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        &format!(
            "{}:4: `remember_days` is a top-level key but stands inside `[channels]` (line 2); \
             move it above the first table",
            s.config.display()
        ),
    );
    has(&r, "fails closed");
}

#[test]
fn the_policy_is_summarised_in_plain_words() {
    let s = Setup::new(
        GOOD_SSHD,
        GOOD_SSHD_CONFIG,
        "trusted_networks = [\"10.0.0.0/8\"]\nlocal_console = \"skip\"\n\
         [policy]\nrequire = \"all\"\nexempt_groups = [\"daemon\"]\n",
    );
    let r = s.check(&[]);
    r.ok();
    has(
        &r,
        "users who have not enrolled are denied (policy.require = \"all\")",
    );
    has(&r, "members of daemon never get asked for a code");
    has(&r, "logins from 10.0.0.0/8 skip the code");
    has(&r, "the console) skip the code");
    // nullok on the line wins over the config for that service.
    s.service(
        "sshd",
        "@include common-auth\nauth required MODULE nullok\n",
    );
    let r = s.check(&[]);
    r.ok();
    has(
        &r,
        "users who have not enrolled log in without a code (nullok)",
    );
}

#[test]
fn a_missing_sshd_config_is_a_note_not_a_failure() {
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, "");
    std::fs::remove_file(&s.sshd_config).unwrap();
    let r = s.check(&[]);
    r.ok();
    has(&r, "SSH is not checked");
}

#[test]
fn policy_groups_that_are_not_found_are_warnings() {
    let s = Setup::new(
        GOOD_SSHD,
        GOOD_SSHD_CONFIG,
        "[policy]\nrequire_groups = [\"otpgate-no-such-group\"]\nexempt_groups = [\"otpgate-no-such-robots\"]\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "group `otpgate-no-such-group` is not found; the module then requires a second factor of every user",
    );
    has(
        &r,
        "group `otpgate-no-such-robots` is not found; it exempts nobody",
    );
}

// --- issue #13: the module twice, control words, Match blocks, the summary --

/// Debian's common-auth after `pam-auth-update --enable otpgate`.
const COMMON_AUTH_WITH_PROFILE: &str = "\
auth\t[success=1 default=ignore]\tpam_unix.so nullok
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
# and here are more per-package modules (the \"Additional\" block)
auth\trequired\t\t\tMODULE
";

#[test]
fn a_service_line_plus_the_pam_auth_update_profile_is_a_warning_naming_both_lines() {
    let s = Setup::new("@include common-auth\n", GOOD_SSHD_CONFIG, "");
    s.service("common-auth", COMMON_AUTH_WITH_PROFILE);
    // What the README said for su before, plus the profile.
    s.service(
        "su",
        "auth sufficient pam_rootok.so\n@include common-auth\nauth required MODULE\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    assert!(!r.stdout.contains("No problems found"), "{r}");
    let (su, common) = (s.path("pam.d/su"), s.path("pam.d/common-auth"));
    has(
        &r,
        &format!(
            "warning: {su}:3: su: the auth stack loads pam_otpgate.so 2 times: {common}:5 \
             (through `@include common-auth` at {su}:2) and {su}:3."
        ),
    );
    has(
        &r,
        &format!(
            "remove the line at {su}:3: the one at {common}:5 (the pam-auth-update profile, \
             `pam-auth-update --enable otpgate`) already covers su"
        ),
    );
    // sshd includes common-auth and has no line of its own: nothing to say.
    assert!(!r.stdout.contains("sshd: the auth stack loads"), "{r}");
    assert!(r.stderr.contains("check found 1 problem"), "{r}");
}

#[test]
fn a_stack_loading_the_module_twice_directly_or_through_a_substack_is_a_warning() {
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, "");
    s.service(
        "sudo",
        "@include common-auth\nauth required MODULE\nauth required MODULE nullok\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    let sudo = s.path("pam.d/sudo");
    has(
        &r,
        &format!(
            "warning: {sudo}:3: sudo: the auth stack loads pam_otpgate.so 2 times: {sudo}:2 and \
             {sudo}:3."
        ),
    );
    has(&r, "keep only one of them");

    std::fs::remove_file(s.pam.join("sudo")).unwrap();
    s.service("otp-stack", "auth required MODULE\n");
    s.service(
        "sshd",
        "@include common-auth\nauth substack otp-stack\nauth required MODULE\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    let (sshd, stack) = (s.path("pam.d/sshd"), s.path("pam.d/otp-stack"));
    has(
        &r,
        &format!(
            "sshd: the auth stack loads pam_otpgate.so 2 times: {stack}:1 (through `auth \
             substack otp-stack` at {sshd}:2) and {sshd}:3."
        ),
    );
    has(&r, &format!("remove the line at {sshd}:3"));
}

#[test]
fn an_unknown_control_word_is_an_error_not_a_note() {
    let s = Setup::new(
        "@include common-auth\nauth requird MODULE\n",
        GOOD_SSHD_CONFIG,
        "",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        &format!(
            "error: {}:2: control `requird`: not a PAM control word: PAM fails every login \
             through this stack",
            s.path("pam.d/sshd")
        ),
    );
    // A pair libpam does not know inside brackets fails the same way.
    s.service(
        "sshd",
        "@include common-auth\nauth [success=ok bogus=die] MODULE\n",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "control `[success=ok bogus=die]`: `bogus` is not a PAM return value",
    );
    // Well-formed brackets stay a note; keywords are not case sensitive.
    for control in ["[success=ok new_authtok_reqd=ok default=die]", "Required"] {
        s.service(
            "sshd",
            &format!("@include common-auth\nauth {control} MODULE\n"),
        );
        let r = s.check(&[]);
        assert_eq!(r.code, 0, "{control}: {r}");
    }
}

#[test]
fn a_match_block_whose_methods_skip_the_code_is_a_warning_naming_its_criteria() {
    let config = format!(
        "{GOOD_SSHD_CONFIG}Match User deploy Address 10.0.0.0/8\n    AuthenticationMethods publickey\n"
    );
    let s = Setup::new(GOOD_SSHD, &config, "");
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    let path = s.path("ssh/sshd_config");
    has(
        &r,
        &format!(
            "warning: {path}:6: the `Match User deploy Address 10.0.0.0/8` block ({path}:5) sets \
             AuthenticationMethods publickey: connections matching `User deploy Address \
             10.0.0.0/8` log in with publickey alone, never asked for a code"
        ),
    );
    has(
        &r,
        "SSH, connections matching `Match User deploy Address 10.0.0.0/8`: log in with publickey alone, never asked for a code",
    );
    // Switching keyboard-interactive off there does the same.
    let config =
        format!("{GOOD_SSHD_CONFIG}Match Group robots\n KbdInteractiveAuthentication no\n");
    let s = Setup::new(GOOD_SSHD, &config, "");
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "connections matching `Group robots` cannot be shown the code prompt",
    );
    // A Match block that still asks for the code is only a note.
    let config = format!(
        "{GOOD_SSHD_CONFIG}Match User deploy\n AuthenticationMethods publickey,keyboard-interactive\n"
    );
    let s = Setup::new(GOOD_SSHD, &config, "");
    let r = s.check(&[]);
    assert_eq!(r.code, 0, "{r}");
    has(&r, "note: ");
    has(&r, "the `Match User deploy` block");
}

#[test]
fn the_summary_agrees_with_an_error_that_the_code_is_never_asked() {
    let key_only =
        "UsePAM yes\nKbdInteractiveAuthentication yes\nAuthenticationMethods publickey\n";
    let s = Setup::new(
        "# @include common-auth\nauth required MODULE\n",
        key_only,
        "",
    );
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "AuthenticationMethods allows publickey without keyboard-interactive",
    );
    has(
        &r,
        "SSH: no code is asked: AuthenticationMethods allows only publickey (see the error).",
    );
    assert!(
        !r.stdout.contains("a key, then keyboard-interactive"),
        "{r}"
    );

    let mixed = "UsePAM yes\nKbdInteractiveAuthentication yes\n\
                 AuthenticationMethods publickey,keyboard-interactive password\n";
    let s = Setup::new("# @include common-auth\nauth required MODULE\n", mixed, "");
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "SSH: a key, then keyboard-interactive (the sshd PAM stack); but password alone is never asked for a code (see the error).",
    );
}

#[test]
fn a_database_timeout_not_below_the_modules_is_a_warning() {
    let config = |timeout: u32| {
        format!(
            "[store]\nkind = \"daemon\"\nsocket = \"/nonexistent/otpgated.sock\"\ntimeout = 2\n\n\
             [daemon]\nbackend = \"postgres\"\n\n[daemon.postgres]\nurl = \"host=db\"\ntimeout = {timeout}\n"
        )
    };
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, &config(3));
    let r = s.check(&[]);
    has(
        &r,
        "daemon.postgres.timeout (3 s) is not below store.timeout (2 s)",
    );
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, &config(1));
    let r = s.check(&[]);
    assert!(!r.stdout.contains("daemon.postgres.timeout"), "{r}");
}

// --- the effective policy of one login (issue #17, part 3) -------------------

const OVERRIDES: &str = r#"remember_days = 7

[channels.sms]
command = ["/usr/local/bin/send-sms", "{to}"]

[[policy.override]]
services = ["sudo"]
remember_days = 0
max_attempts = 1

[[policy.override]]
groups = ["root"]
methods = ["app", "backup"]
"#;

/// The setting's line of the text report.
fn setting_line<'a>(r: &'a Run, setting: &str) -> &'a str {
    r.stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{setting} ")))
        .unwrap_or_else(|| panic!("no {setting} line\n{r}"))
}

#[test]
fn check_with_user_and_service_names_the_entry_that_decided_each_setting() {
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, OVERRIDES);
    // sudo: the first entry matches (root's group entry comes later).
    let r = s.check(&["--user", "root", "--service", "sudo"]);
    r.ok();
    has(&r, "Effective policy for root on service sudo");
    has(
        &r,
        "policy.override[0] matches (services = [\"sudo\"]); first match wins",
    );
    let line = setting_line(&r, "remember_days");
    assert!(
        line.contains(" 0 days ") && line.ends_with("policy.override[0] (services = [\"sudo\"])"),
        "{line}"
    );
    assert!(setting_line(&r, "max_attempts").contains("policy.override[0]"));
    let line = setting_line(&r, "methods");
    assert!(
        line.contains("app, backup, email, sms, ssh-key")
            && line.ends_with("base (policy.methods)"),
        "{line}"
    );
    assert!(setting_line(&r, "lockout_after").ends_with("base (lockout_after)"));
    // sshd: root's group entry; SMS is not allowed.
    let r = s.check(&["--user", "root", "--service", "sshd"]);
    r.ok();
    let line = setting_line(&r, "methods");
    assert!(
        line.contains(" app, backup ")
            && line.ends_with("policy.override[1] (groups = [\"root\"])"),
        "{line}"
    );
    assert!(setting_line(&r, "remember_days").contains(" 7 days "));

    let j = s
        .check(&["--json", "--user", "root", "--service", "sshd"])
        .json();
    assert_eq!(j["user"], "root");
    assert_eq!(j["service"], "sshd");
    assert_eq!(j["matched"], 1);
    assert_eq!(j["requirement"], "if-enrolled");
    let settings = j["settings"].as_array().unwrap();
    let methods = settings.iter().find(|s| s["setting"] == "methods").unwrap();
    assert_eq!(methods["value"], serde_json::json!(["app", "backup"]));
    assert_eq!(methods["decided_by"], "policy.override[1]");
    assert_eq!(methods["match"], "groups = [\"root\"]");
    let days = settings
        .iter()
        .find(|s| s["setting"] == "remember_days")
        .unwrap();
    assert_eq!(
        (days["value"].as_u64(), &days["decided_by"]),
        (Some(7), &serde_json::json!("base"))
    );
    let lifetime = settings
        .iter()
        .find(|s| s["setting"] == "code_lifetime")
        .unwrap();
    assert_eq!(lifetime["value"], serde_json::json!({"sms": 10}));
}

/// A group that is not found (a typo, or a directory service down): the
/// entry holds where it is stricter, and the plain check warns about it.
#[test]
fn an_override_group_that_is_not_found_holds_where_it_is_stricter_and_is_warned_about() {
    let config = "remember_days = 7\n[[policy.override]]\ngroups = [\"no-such-group-otpgate\"]\n\
                  require = \"all\"\nremember_days = 30\n";
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, config);
    let r = s.check(&["--user", "root", "--service", "sshd"]);
    r.ok();
    has(&r, "policy.override[0] may match");
    assert!(
        setting_line(&r, "require").contains("\"all\"")
            && setting_line(&r, "require").contains("may match, stricter"),
        "{r}"
    );
    assert!(
        setting_line(&r, "remember_days").contains(" 7 days "),
        "{r}"
    );
    has(&r, "root: must use a second factor: denied until enrolled");
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "warning: policy.override[0]: group `no-such-group-otpgate` is not found",
    );
}

#[test]
fn an_override_matching_every_login_is_an_error_of_check() {
    let s = Setup::new(
        GOOD_SSHD,
        GOOD_SSHD_CONFIG,
        "[[policy.override]]\nmax_attempts = 1\n",
    );
    for extra in [&[][..], &["--user", "root", "--service", "sshd"][..]] {
        let r = s.check(extra);
        assert_eq!(r.code, 8, "{r}");
        has(
            &r,
            ":1: key `policy.override[0].groups`: an entry needs `groups` or `services`",
        );
    }
}

// --- SSH keys (issue #17, part 2) -------------------------------------------

const FIDO_KEYS: &str = "[policy]\ntrusted_ssh_keys = [\"sk-ssh-ed25519@openssh.com\"]\n";

/// `policy.trusted_ssh_keys` with password-then-code: sshd has no key to
/// report when the code is asked, so the setting does nothing.
#[test]
fn trusted_ssh_keys_without_a_key_before_the_code_is_a_warning() {
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, FIDO_KEYS);
    let r = s.check(&[]);
    assert_eq!(r.code, 8, "{r}");
    has(
        &r,
        "policy.trusted_ssh_keys is set, but no AuthenticationMethods list has publickey before \
         keyboard-interactive",
    );
    has(&r, "ExposeAuthInfo is not yes.");
    assert!(!r.stdout.contains("SSH keys: a login whose"), "{r}");
}

/// Key then code: check says which keys skip the code; `ExposeAuthInfo`
/// not set is a note (OpenSSH 9.2 reports the key anyway), not a problem.
#[test]
fn key_then_code_with_trusted_ssh_keys_says_which_keys_skip_the_code() {
    let key_config = "UsePAM yes\nKbdInteractiveAuthentication yes\n\
        AuthenticationMethods publickey,keyboard-interactive\nPasswordAuthentication no\n";
    let key_stack = "# @include common-auth\nauth required MODULE\nauth required pam_permit.so\n";
    let s = Setup::new(key_stack, key_config, FIDO_KEYS);
    let r = s.check(&[]);
    r.ok();
    has(
        &r,
        "SSH keys: a login whose one key is in policy.trusted_ssh_keys \
         (sk-ssh-ed25519@openssh.com) skips the code (method ssh-key).",
    );
    has(
        &r,
        &format!(
            "note: {}: ExposeAuthInfo is not yes.",
            s.sshd_config.display()
        ),
    );
    std::fs::write(&s.sshd_config, format!("{key_config}ExposeAuthInfo yes\n")).unwrap();
    let r = s.check(&[]);
    r.ok();
    assert!(!r.stdout.contains("ExposeAuthInfo is not yes"), "{r}");
    // Remembered hosts are said to be bound to the key.
    std::fs::write(&s.config, format!("remember_days = 7\n{FIDO_KEYS}")).unwrap();
    let r = s.check(&[]);
    r.ok();
    has(
        &r,
        "a remembered host is bound to the key of the login that trusted it, when it used one.",
    );
    // A bad rule is the config error the module denies with.
    std::fs::write(
        &s.config,
        "[policy]\ntrusted_ssh_keys = [\"sk-ssh-ed25519\"]\n",
    )
    .unwrap();
    let r = s.check(&[]);
    assert_ne!(r.code, 0, "{r}");
    has(&r, "`sk-ssh-ed25519` is neither a key type");
}

/// `check --user --service` says what the user's enrollment offers on
/// that login: every device's codes, backup codes left, sent codes, each
/// marked when this login does not allow it.
#[test]
fn check_with_user_and_service_lists_the_devices_and_what_this_login_allows() {
    need!(require(
        otpgate_test_support::is_root(),
        "central user files are root's"
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "user_file = \"{}/%u.toml\"\n{OVERRIDES}",
        dir.path().display()
    );
    let s = Setup::new(GOOD_SSHD, GOOD_SSHD_CONFIG, &config);
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", s.config.to_str().unwrap(), "--user", "root"];
        all.extend_from_slice(args);
        let r = run(BIN, &all, "");
        r.ok();
    };
    cli(&[
        "enroll",
        "--secret",
        SECRET,
        "--no-confirm",
        "--no-qr",
        "--json",
    ]);
    cli(&[
        "devices",
        "add",
        "spare",
        "--hotp",
        "--secret",
        SECRET,
        "--no-confirm",
        "--no-qr",
        "--force",
    ]);
    cli(&["enroll", "sms", "+441632960961", "--no-confirm", "--force"]);

    let r = s.check(&["--user", "root", "--service", "sshd"]);
    r.ok();
    has(&r, "root can answer with:");
    has(&r, "totp codes from device app\n");
    has(&r, "hotp codes from device spare\n");
    has(&r, "backup codes (10 left)\n");
    // root's group entry allows only app and backup on sshd.
    has(&r, "codes sent by sms — not on this login");
    let r = s.check(&["--user", "root", "--service", "sudo"]);
    has(&r, "codes sent by sms\n");

    let j = s
        .check(&["--json", "--user", "root", "--service", "sshd"])
        .json();
    let answers = j["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 4, "{j}");
    assert_eq!(answers[1]["device"], "spare");
    assert_eq!(answers[1]["method"], "hotp");
    assert_eq!(answers[3]["method"], "sms");
    assert_eq!(answers[3]["allowed"], false);
}
