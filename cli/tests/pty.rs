//! `otpgate enroll` as a person sees it: through a real pseudo-terminal
//! driven by `expect` (Debian expect). The QR code on screen decodes to
//! the printed URI, typed codes are not echoed, a wrong code saves
//! nothing, the right one (from oathtool) saves a 0600 file, and the backup
//! codes appear once.

mod common;

use common::*;
use otpgate_test_support::require_tool;

/// Runs `otpgate enroll` under expect; `answers` says what to type at each
/// "Verification code:" prompt: a literal code, or `RIGHT` for oathtool's
/// code of the secret shown on screen. Returns the terminal transcript.
fn enroll_in_a_terminal(env: &Env, answers: &[&str], extra: &[&str]) -> Option<(i32, String)> {
    require_tool("expect", "expect")?;
    let transcript = env.path("transcript.txt");
    let _ = std::fs::remove_file(&transcript);
    // Each answer is sent the instant the prompt shows: echo is off
    // before the prompt is written, so even a fast answer is not echoed.
    let mut sends = String::new();
    for answer in answers {
        let value = if *answer == "RIGHT" {
            "[exec oathtool --totp -b $secret]".to_string()
        } else {
            answer.to_string()
        };
        sends.push_str(&format!(
            "expect {{\n  \"Verification code: \" {{ send \"{value}\\r\" }}\n  timeout {{ exit 101 }}\n}}\n"
        ));
    }
    let script = format!(
        r#"set timeout 10
log_user 0
log_file -a -noappend {transcript}
spawn -noecho {bin} --config {config} --user {USER} enroll {extra}
# The `&` that follows the secret in the URI: without it expect may match
# a secret cut short by a partial read of the terminal.
expect {{
  -re {{URI: otpauth://[^?]*\?secret=([A-Z2-7]+)&}} {{ set secret $expect_out(1,string) }}
  timeout {{ exit 100 }}
}}
{sends}expect {{
  eof {{}}
  timeout {{ exit 102 }}
}}
lassign [wait] pid spawnid os_error status
exit $status
"#,
        transcript = transcript.display(),
        bin = BIN,
        config = env.config.display(),
        extra = extra.join(" "),
    );
    let script_path = env.path("enroll.exp");
    std::fs::write(&script_path, script).unwrap();
    let r = run("expect", &[script_path.to_str().unwrap()], "");
    let text = std::fs::read_to_string(&transcript).unwrap_or_default();
    Some((r.code, text))
}

#[test]
fn enroll_in_a_terminal_shows_a_qr_code_of_the_uri_and_saves_after_the_right_code() {
    let Some(env) = Env::new("") else { return };
    let codes_file = env.user_dir().join("codes.txt");
    let Some((code, screen)) = enroll_in_a_terminal(
        &env,
        &["000000", "RIGHT"],
        &["--backup-codes-file", codes_file.to_str().unwrap()],
    ) else {
        return;
    };
    assert_eq!(code, 0, "enroll failed\n{screen}");
    let uri = screen
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("URI: "))
        .unwrap_or_else(|| panic!("no URI\n{screen}"));
    let decoded = decode_half_blocks(&screen).unwrap_or_else(|| panic!("no QR\n{screen}"));
    assert_eq!(decoded, uri);
    assert!(screen.contains("Wrong code; 2 tries left."), "{screen}");
    assert!(!screen.contains("000000"), "the code was echoed\n{screen}");
    assert_eq!(mode(&env.user_file(USER)), 0o600);
    let written = std::fs::read_to_string(&codes_file).unwrap();
    let codes: Vec<&str> = written.lines().filter(|l| l.len() == 8).collect();
    assert_eq!(codes.len(), 10);
    for c in codes {
        assert_eq!(screen.matches(c).count(), 1, "{c} shown once\n{screen}");
    }
}

#[test]
fn enroll_in_a_terminal_saves_nothing_after_three_wrong_codes() {
    let Some(env) = Env::new("") else { return };
    // The second answer is far longer than any code (and than the CLI's
    // 1 KiB line bound): a wrong code like any other.
    let long = "1".repeat(2000);
    let Some((code, screen)) = enroll_in_a_terminal(&env, &["000000", &long, "222222"], &[]) else {
        return;
    };
    for said in [
        "Wrong code; 2 tries left.",
        "Wrong code; 1 try left.",
        "Wrong code.\r",
    ] {
        assert_eq!(screen.matches(said).count(), 1, "{said}\n{screen}");
    }
    assert!(
        !screen.contains("111111"),
        "the long answer was echoed\n{screen}"
    );
    assert_eq!(code, 3, "{screen}");
    assert!(screen.contains("nothing was saved"), "{screen}");
    assert!(!env.user_file(USER).exists());
}
