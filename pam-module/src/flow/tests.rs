//! The flow driven by a scripted fake PAM handle and a fake clock, on a
//! memory store that runs every change twice (as a database may): no root
//! needed, and a change that acts outside the record would show. The file
//! store under the real module is tested in `tests/` and the hardening
//! suite.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use otpgate_config::Store;
use otpgate_config::channel::Kind;
use otpgate_config::deliver::{Message, Outcome};
use otpgate_config::store::{MemoryBackend, MemoryStore};

use otpgate_config::verification::Refusal;
use otpgate_test_support::{FakeClock, code_at, totp_record};

use super::*;
use crate::log::Memory;
use crate::reason::Reason;

const NOW: u64 = 1_700_000_010;

/// The flow reads the support crate's fake clock (its inherent methods of
/// the same names, so no recursion).
impl Clock for FakeClock {
    fn unix_now(&self) -> Option<u64> {
        FakeClock::unix_now(self)
    }
    fn monotonic(&self) -> Duration {
        FakeClock::monotonic(self)
    }
    fn local_hhmm(&self, unix: u64) -> String {
        FakeClock::local_hhmm(self, unix)
    }
}

/// A scripted PAM conversation. Dropped with answers left over, it fails
/// the test: a script that was not used up did not test what it says.
#[derive(Default)]
struct Fake {
    user: Option<String>,
    rhost: Option<String>,
    /// `PAM_SERVICE`; `otp-test` when unset.
    service: Option<String>,
    /// `PAM_TTY`; `None` reads as "ssh" (what sshd sets).
    tty: Option<String>,
    /// The PAM environment (`SSH_AUTH_INFO_0`).
    env: Vec<(String, String)>,
    authtok: Option<Vec<u8>>,
    set_authtok: Option<Vec<u8>>,
    answers: VecDeque<Vec<u8>>,
    transcript: Vec<String>,
    /// The clock of the run: each prompt moves its monotonic reading.
    clock: Rc<FakeClock>,
    /// How long each prompt takes to answer.
    think: Duration,
    panic_on_prompt: bool,
    /// Runs while the user "types" each answer (another login meanwhile).
    meanwhile: Option<Box<dyn FnMut()>>,
    /// Messages the fake sender delivered (their standard input).
    sent: Rc<RefCell<Vec<String>>>,
    /// The handle's verified record (`pam_set_data`), kept as the encoded
    /// bytes libpam would hold: one `Fake` run twice is two instances of
    /// the module in one stack.
    verified: Option<Vec<u8>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.answers.is_empty(),
                "scripted answers left unused: {:?} (transcript {:?})",
                self.answers
                    .iter()
                    .map(|a| String::from_utf8_lossy(&a[..a.len().min(20)]).into_owned())
                    .collect::<Vec<_>>(),
                self.transcript
            );
        }
    }
}

impl Handle for Fake {
    fn user(&mut self) -> Result<String, Code> {
        self.user.clone().ok_or(Code::Other(10))
    }
    fn rhost(&self) -> Option<String> {
        self.rhost.clone()
    }
    fn service(&self) -> Option<String> {
        self.service.clone().or_else(|| Some("otp-test".into()))
    }
    fn tty(&self) -> Option<String> {
        Some(self.tty.clone().unwrap_or_else(|| "ssh".into()))
    }
    fn env(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn authtok(&self) -> Option<Secret> {
        self.authtok.clone().map(Zeroizing::new)
    }
    fn set_authtok(&mut self, token: &[u8]) -> Result<(), Code> {
        self.set_authtok = Some(token.to_vec());
        Ok(())
    }
    fn prompt(&mut self, text: &str, echo: bool) -> Result<Option<Secret>, Code> {
        assert!(!self.panic_on_prompt, "scripted panic");
        self.transcript.push(format!("prompt(echo={echo}): {text}"));
        self.clock.advance_monotonic(self.think);
        if let Some(meanwhile) = &mut self.meanwhile {
            meanwhile();
        }
        match self.answers.pop_front() {
            // `<sent>`: the code of the last message sent.
            Some(a) if a == b"<sent>" => {
                let last = self.sent.borrow().last().cloned().unwrap_or_default();
                Ok(Some(Zeroizing::new(sent_code(&last).into_bytes())))
            }
            Some(a) => Ok(Some(Zeroizing::new(a))),
            None => Err(Code::ConvErr),
        }
    }
    fn info(&mut self, text: &str) {
        self.transcript.push(format!("info: {text}"));
    }
    fn error(&mut self, text: &str) {
        self.transcript.push(format!("error: {text}"));
    }
    fn verified(&self) -> Option<Verified> {
        self.verified.as_deref().and_then(Verified::decode)
    }
    fn set_verified(&mut self, verified: &Verified) -> Result<(), Code> {
        self.verified = Some(verified.encode());
        Ok(())
    }
}

/// A temp dir with a config, and root's record in memory.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    backend: MemoryBackend,
    store: Arc<MemoryStore>,
    /// The log's reasons of the last run.
    last: RefCell<Vec<Reason>>,
}

impl Setup {
    fn new(config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let backend = MemoryBackend::new();
        let store = backend.insert("root", MemoryStore::new("root").retrying());
        Setup {
            _dir: dir,
            config: path,
            backend,
            store,
            last: RefCell::default(),
        }
    }

    fn enroll(&self, record: &UserRecord) {
        self.store.put(Some(record.clone()));
    }

    fn record(&self) -> UserRecord {
        self.store.snapshot().expect("root is enrolled")
    }

    fn args(&self, extra: &[&str]) -> Args {
        let mut raw = vec![format!("config={}", self.config.display())];
        raw.extend(extra.iter().map(|s| s.to_string()));
        Args::parse(&raw)
    }

    /// Runs the flow; returns the code and the log lines.
    fn run_at(&self, now: Option<u64>, h: &mut Fake, args: &Args) -> (Code, Vec<String>) {
        self.run_logged(now, h, args, false, false).0
    }

    fn run_sending(
        &self,
        now: Option<u64>,
        h: &mut Fake,
        args: &Args,
        fail: bool,
    ) -> (Code, Vec<String>) {
        self.run_logged(now, h, args, fail, false).0
    }

    fn run(&self, h: &mut Fake, args: &Args) -> (Code, Vec<String>) {
        self.run_at(Some(NOW), h, args)
    }

    /// The whole run: code, log lines, and the log's reasons.
    fn run_logged(
        &self,
        now: Option<u64>,
        h: &mut Fake,
        args: &Args,
        fail: bool,
        silent: bool,
    ) -> ((Code, Vec<String>), Vec<Reason>) {
        let clock = h.clock.clone();
        clock.set_unix_now(now);
        let sender = FakeSender {
            sent: h.sent.clone(),
            fail,
        };
        let env = Env {
            clock: &*clock,
            sender: &sender,
            stores: &self.backend,
        };
        let mut log = Memory::default();
        let code = guarded(&mut log, |log| authenticate(h, log, args, silent, &env));
        let lines = log.lines.into_iter().map(|(_, l)| l).collect();
        self.last.replace(log.reasons.clone());
        ((code, lines), log.reasons)
    }

    /// The last reason the log gave in the last run.
    fn last_reason(&self) -> Reason {
        self.last
            .borrow()
            .last()
            .cloned()
            .expect("a decision was logged")
    }

    /// The reasons the log gave, with the code.
    fn reasons(&self, h: &mut Fake, args: &Args) -> (Code, Vec<Reason>) {
        let ((code, _), reasons) = self.run_logged(Some(NOW), h, args, false, false);
        (code, reasons)
    }
}

fn fake(rhost: Option<&str>, answers: &[&[u8]]) -> Fake {
    let mut h = Fake::default();
    h.user = Some("root".into());
    h.rhost = rhost.map(str::to_string);
    h.answers = answers.iter().map(|a| a.to_vec()).collect();
    h
}

/// The `outcome=refused` lines: one per refused answer.
fn refused(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains(" outcome=refused "))
        .cloned()
        .collect()
}

/// The decision lines (`success`, `ignore`, `deny`, `error`).
fn decisions(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| {
            ["success", "ignore", "deny", "error"]
                .iter()
                .any(|o| l.contains(&format!(" outcome={o} ")))
        })
        .cloned()
        .collect()
}

/// A refused answer's line for root on `otp-test` (tty `ssh`).
fn refused_line(rhost: &str, method: &str, why: &str, reason: &str) -> String {
    format!(
        "user=root service=otp-test rhost={rhost} tty=ssh method={method} \
         outcome=refused why={why} reason=\"{reason}\""
    )
}

/// The digits of the first run of 6 to 8 digits in a message.
fn sent_code(message: &str) -> String {
    message
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| (6..=8).contains(&w.len()))
        .unwrap_or_default()
        .to_string()
}

/// Delivers into `Fake::sent` (or fails).
struct FakeSender {
    sent: Rc<RefCell<Vec<String>>>,
    fail: bool,
}

impl Sender for FakeSender {
    fn send(&self, message: &Message) -> Outcome {
        if self.fail {
            return Outcome::Failed("exited with status 75: relay down".into());
        }
        let text = String::from_utf8(message.stdin.to_vec()).unwrap();
        self.sent.borrow_mut().push(text);
        Outcome::Sent(Duration::from_millis(3))
    }
}

#[test]
fn current_totp_code_is_accepted_and_logged_without_the_code() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let code = code_at(NOW);
    let mut h = fake(Some("203.0.113.7"), &[&code]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success, "{log:?}");
    assert_eq!(h.transcript, ["prompt(echo=false): Verification code: "]);
    assert_eq!(log.len(), 1, "{log:?}");
    let line = &log[0];
    for want in [
        "user=root",
        "service=otp-test",
        "rhost=203.0.113.7",
        "method=totp",
        "outcome=success",
        "reason=\"code accepted\"",
    ] {
        assert!(line.contains(want), "{want} missing in {line}");
    }
    assert!(!line.contains(std::str::from_utf8(&code).unwrap()));
    assert_eq!(s.record().devices[0].last_step, NOW / 30);
}

#[test]
fn the_same_code_twice_is_refused_the_second_time() {
    let s = Setup::new("max_attempts = 1");
    s.enroll(&totp_record());
    let code = code_at(NOW);
    assert_eq!(
        s.run(&mut fake(None, &[&code]), &s.args(&[])).0,
        Code::Success
    );
    let mut h = fake(None, &[&code]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert!(log[0].contains("code already used"), "{log:?}");
    assert_eq!(
        h.transcript.last().unwrap(),
        "error: That code was already used; wait for the next one."
    );
    let mut h = fake(None, &[&code]);
    // The refused answer's line, then the decision's.
    let replayed = Reason::Refused(Refusal::Replayed);
    assert_eq!(
        s.reasons(&mut h, &s.args(&[])),
        (Code::AuthErr, vec![replayed.clone(), replayed])
    );
    assert_eq!(s.record().state.failures, 2);
}

#[test]
fn wrong_codes_say_how_many_tries_remain_then_a_right_one_passes() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(None, &[b"000000", b"111111", &code_at(NOW)]);
    let (rc, _) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert_eq!(
        h.transcript,
        [
            "prompt(echo=false): Verification code: ",
            "error: Wrong code; 2 tries left.",
            "prompt(echo=false): Verification code: ",
            "error: Wrong code; 1 try left.",
            "prompt(echo=false): Verification code: ",
        ]
    );
    // Success resets the count.
    assert_eq!(s.record().state.failures, 0);
}

#[test]
fn max_attempts_wrong_answers_deny_and_count_every_one() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let long = vec![b'1'; 1 << 20];
    let mut h = fake(None, &[b"", b"12\x0034", &long]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert_eq!(h.transcript.last().unwrap(), "error: Wrong code.");
    assert_eq!(s.record().state.failures, 3);
    assert_eq!(refused(&log).len(), 3, "one line per wrong answer: {log:?}");
    assert_eq!(decisions(&log).len(), 1, "{log:?}");
    assert!(log[3].contains("outcome=deny"), "{log:?}");
}

#[test]
fn lockout_tells_until_when_and_refuses_even_a_right_code() {
    let s = Setup::new("lockout_after = 2\nlockout_minutes = 15\nmax_attempts = 3");
    s.enroll(&totp_record());
    // The second wrong code locks: no third prompt for the right one.
    let mut h = fake(None, &[b"000000", b"111111"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::MaxTries);
    let until = NOW + 900;
    let hhmm = format!("{:02}:{:02} UTC", until / 3600 % 24, until / 60 % 60);
    assert_eq!(
        h.transcript.last().unwrap(),
        &format!("error: Too many wrong codes. Account locked until {hhmm}")
    );
    // The answer that locks says so on its own line, then the decision.
    assert_eq!(
        refused(&log),
        [
            refused_line("-", "-", "wrong", "wrong code"),
            refused_line(
                "-",
                "-",
                "wrong",
                &format!(
                    "wrong code; locked out until {}",
                    otpgate_config::texts::utc_timestamp(until)
                )
            ),
        ],
    );
    assert!(log[2].contains("outcome=deny"), "{log:?}");
    assert_eq!(
        s.last_reason(),
        Reason::RefusedAndLocked {
            why: Refusal::Wrong,
            until
        }
    );
    // The next login is refused without a prompt, right code or not.
    let mut h = fake(None, &[]);
    let (rc, _) = s.run_at(Some(NOW + 60), &mut h, &s.args(&[]));
    assert_eq!(rc, Code::MaxTries);
    assert_eq!(
        h.transcript,
        [format!("error: Account locked until {hhmm}")]
    );
    // After the lock ends, the right code works.
    let later = until + 1;
    let mut h = fake(None, &[&code_at(later)]);
    assert_eq!(s.run_at(Some(later), &mut h, &s.args(&[])).0, Code::Success);
}

#[test]
fn no_file_is_ignored_when_optional_and_denied_with_a_hint_when_required() {
    let s = Setup::new("");
    let mut h = fake(None, &[]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Ignore);
    assert!(h.transcript.is_empty());
    assert!(log[0].contains("outcome=ignore"), "{log:?}");

    for policy in ["policy.require=all", "policy.require_groups=root"] {
        let mut h = fake(None, &[]);
        let (rc, log) = s.run(&mut h, &s.args(&[policy]));
        assert_eq!(rc, Code::AuthErr, "{policy}");
        assert_eq!(h.transcript, [format!("error: {ENROLL_HINT}")]);
        assert!(log[0].contains("2FA is required"), "{log:?}");
        assert_eq!(s.last_reason(), Reason::NotEnrolledButRequired);
    }
    // Exemption beats requirement.
    let mut h = fake(None, &[]);
    let (rc, log) = s.run(
        &mut h,
        &s.args(&["policy.require=all", "policy.exempt_groups=root"]),
    );
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=exempt"), "{log:?}");
}

#[test]
fn trusted_networks_pass_without_a_prompt_and_others_are_asked() {
    let s = Setup::new("trusted_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]");
    s.enroll(&totp_record());
    for rhost in ["10.1.2.3", "::ffff:10.9.9.9", "2001:db8::1"] {
        let mut h = fake(Some(rhost), &[]);
        let (rc, log) = s.run(&mut h, &s.args(&[]));
        assert_eq!(rc, Code::Success, "{rhost}");
        assert!(h.transcript.is_empty());
        assert!(log[0].contains("method=trusted-network"), "{log:?}");
    }
    for rhost in ["192.0.2.1", "2001:db9::1", "10.example.com"] {
        let mut h = fake(Some(rhost), &[b"000000"]);
        let (rc, _) = s.run(&mut h, &s.args(&["max_attempts=1"]));
        assert_eq!(rc, Code::AuthErr, "{rhost}");
        assert_eq!(h.transcript[0], "prompt(echo=false): Verification code: ");
    }
}

#[test]
fn local_console_follows_the_config() {
    let s = Setup::new("local_console = \"skip\"");
    s.enroll(&totp_record());
    let mut h = fake(None, &[]);
    h.tty = Some("tty1".into());
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=local-console"), "{log:?}");
    // An empty PAM_RHOST on a console is local too; a remote one is asked.
    let mut h = fake(Some(""), &[]);
    h.tty = Some("/dev/tty2".into());
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    // No rhost but a pseudo-terminal (su in an SSH session) or sshd's "ssh": asked.
    for tty in ["/dev/pts/3", "pts/0", "ssh"] {
        let mut h = fake(None, &[b"000000"]);
        h.tty = Some(tty.into());
        assert_eq!(
            s.run(&mut h, &s.args(&["max_attempts=1"])).0,
            Code::AuthErr,
            "{tty}"
        );
        assert_eq!(
            h.transcript.len(),
            2,
            "{tty} was not asked: {:?}",
            h.transcript
        );
    }
    let mut h = fake(Some("192.0.2.1"), &[&code_at(NOW)]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(h.transcript.len(), 1);
}

#[test]
fn a_remembered_host_skips_the_prompt_until_it_expires() {
    let s = Setup::new("remember_days = 7");
    s.enroll(&totp_record());
    let host = Some("203.0.113.7");
    let mut h = fake(host, &[&code_at(NOW), b"y"]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(
        h.transcript,
        [
            "prompt(echo=false): Verification code: ",
            "prompt(echo=true): Skip the code for logins from 203.0.113.7 for 7 days? [y/N] ",
            "info: Logins from 203.0.113.7 to otp-test skip the code for 7 days.",
        ]
    );
    // Next login from there: no prompt.
    let mut h = fake(host, &[]);
    let (rc, log) = s.run_at(Some(NOW + 3600), &mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(h.transcript.is_empty());
    assert!(log[0].contains("method=remembered-host"), "{log:?}");
    // Another host is asked (and "no" is not remembered).
    let mut h = fake(Some("203.0.113.8"), &[&code_at(NOW + 3600), b"n"]);
    assert_eq!(
        s.run_at(Some(NOW + 3600), &mut h, &s.args(&[])).0,
        Code::Success
    );
    assert_eq!(h.transcript.len(), 2);
    assert_eq!(s.record().trusted_hosts.len(), 1);
    // After 7 days the first host is asked again.
    let later = NOW + 7 * 86_400 + 1;
    let mut h = fake(host, &[&code_at(later), b""]);
    assert_eq!(s.run_at(Some(later), &mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(h.transcript[0], "prompt(echo=false): Verification code: ");
}

/// Trusts 203.0.113.7 for root on `otp-test` after an app code.
fn trust_203(s: &Setup) {
    let mut h = fake(Some("203.0.113.7"), &[&code_at(NOW), b"y"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(
        log[0].contains("outcome=trust-granted")
            && log[0].contains("user=root")
            && log[0].contains("service=otp-test")
            && log[0].contains("user trusted logins from 203.0.113.7 for 7 days"),
        "{log:?}"
    );
}

#[test]
fn trust_is_offered_only_after_an_app_code() {
    let s = Setup::new("remember_days = 7\nmax_attempts = 1");
    let mut r = totp_record();
    let codes = r.new_backup_codes(2, 8).unwrap();
    s.enroll(&r);
    let mut h = fake(Some("203.0.113.7"), &[codes[0].as_bytes()]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(h.transcript.len(), 2, "{:?}", h.transcript);
    assert!(s.record().trusted_hosts.is_empty());
    // A host name is never offered either: it is not an address.
    let mut h = fake(Some("host.example"), &[&code_at(NOW)]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(h.transcript.len(), 1, "{:?}", h.transcript);
}

#[test]
fn a_locked_account_is_refused_even_from_a_remembered_host() {
    let s = Setup::new("remember_days = 7");
    s.enroll(&totp_record());
    trust_203(&s);
    let mut r = s.record();
    r.state.locked_until = NOW + 600;
    s.enroll(&r);
    let mut h = fake(Some("203.0.113.7"), &[]);
    let (rc, reasons) = s.reasons(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::MaxTries);
    assert_eq!(reasons, [Reason::LockedOut { seconds_left: 600 }]);
}

#[test]
fn a_remembered_host_is_bound_to_its_service_and_canonical_address() {
    let s = Setup::new("remember_days = 7");
    s.enroll(&totp_record());
    trust_203(&s);
    let mut h = fake(Some("::ffff:203.0.113.7"), &[]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success, "same address");
    let mut h = fake(Some("203.0.113.7"), &[&code_at(NOW + 30), b"n"]);
    h.service = Some("su".into());
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(h.transcript[0], "prompt(echo=false): Verification code: ");
}

#[test]
fn forward_pass_asks_everyone_the_same_and_forwards_the_whole_answer() {
    let s = Setup::new("");
    let forward = s.args(&["forward_pass"]);
    let expect = ["prompt(echo=false): Password & verification code: "];
    // Unknown user.
    let mut h = fake(None, &[b"hunter2"]);
    h.user = Some("no-such-user-otpgate".into());
    assert_eq!(s.run(&mut h, &forward).0, Code::UserUnknown);
    assert_eq!(h.transcript, expect);
    assert_eq!(h.set_authtok.as_deref(), Some(&b"hunter2"[..]));
    // Not enrolled: the next module decides on the whole answer.
    s.store.put(None);
    let mut h = fake(None, &[b"hunter2 123456"]);
    assert_eq!(s.run(&mut h, &forward).0, Code::Ignore);
    assert_eq!(h.transcript, expect);
    assert_eq!(h.set_authtok.as_deref(), Some(&b"hunter2 123456"[..]));
    // Enrolled.
    s.enroll(&totp_record());
    let mut answer = b"hunter2".to_vec();
    answer.extend(code_at(NOW));
    let mut h = fake(None, &[&answer]);
    assert_eq!(s.run(&mut h, &forward).0, Code::Success);
    assert_eq!(h.transcript, expect);
    // Locked: asked the same, then refused.
    let mut r = s.record();
    r.state.locked_until = NOW + 60;
    s.enroll(&r);
    let mut h = fake(None, &[b"hunter2"]);
    assert_eq!(s.run(&mut h, &forward).0, Code::MaxTries);
    assert_eq!(h.transcript[0], expect[0]);
    // With use_first_pass the earlier module's token is the answer: no
    // prompt, and it is left as it was.
    s.store.put(None);
    let mut h = fake(None, &[]);
    h.authtok = Some(b"hunter2".to_vec());
    let args = s.args(&["forward_pass", "use_first_pass"]);
    assert_eq!(s.run(&mut h, &args).0, Code::Ignore);
    assert!(h.transcript.is_empty() && h.set_authtok.is_none());
}

#[test]
fn forward_pass_wrong_answers_lock_their_source_not_the_account() {
    let s = Setup::new("lockout_after = 3\nmax_attempts = 3\nremember_days = 7");
    s.enroll(&totp_record());
    let forward = s.args(&["forward_pass"]);
    let mut h = fake(Some("198.51.100.4"), &[b"x000000", b"x000001", b"x000002"]);
    assert_eq!(s.run(&mut h, &forward).0, Code::MaxTries);
    let r = s.record();
    assert_eq!((r.state.failures, r.locked_until(NOW)), (0, None));
    let mut h = fake(Some("198.51.100.4"), &[b"x"]);
    let (rc, reasons) = s.reasons(&mut h, &forward);
    assert_eq!(rc, Code::MaxTries);
    // The answer refused unread is logged as refused, then the decision.
    assert!(
        matches!(
            reasons[..],
            [
                Reason::SourceLockedOut { .. },
                Reason::SourceLockedOut { .. }
            ]
        ),
        "{reasons:?}"
    );
    // The user from elsewhere: in, and no trust offered before the
    // password is proven.
    let mut answer = b"pw".to_vec();
    answer.extend(code_at(NOW));
    let mut h = fake(Some("203.0.113.9"), &[&answer]);
    assert_eq!(s.run(&mut h, &forward).0, Code::Success);
    assert_eq!(h.transcript.len(), 1, "{:?}", h.transcript);
}

#[test]
fn forward_pass_splits_the_code_off_and_passes_the_password_on() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut answer = b"pass 12".to_vec();
    answer.extend(code_at(NOW));
    let mut h = fake(None, &[&answer]);
    let (rc, _) = s.run(&mut h, &s.args(&["forward_pass"]));
    assert_eq!(rc, Code::Success);
    assert_eq!(
        h.transcript,
        ["prompt(echo=false): Password & verification code: "]
    );
    assert_eq!(h.set_authtok.as_deref(), Some(&b"pass 12"[..]));
}

#[test]
fn use_first_pass_takes_the_code_from_pam_authtok_and_never_prompts() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(None, &[]);
    h.authtok = Some(code_at(NOW));
    assert_eq!(s.run(&mut h, &s.args(&["use_first_pass"])).0, Code::Success);
    assert!(h.transcript.is_empty());
    let mut h = fake(None, &[]);
    h.authtok = Some(b"000000".to_vec());
    assert_eq!(s.run(&mut h, &s.args(&["use_first_pass"])).0, Code::AuthErr);
    assert_eq!(h.transcript, ["error: Wrong code."]);
    let mut h = fake(None, &[]);
    assert_eq!(s.run(&mut h, &s.args(&["use_first_pass"])).0, Code::AuthErr);
}

#[test]
fn try_first_pass_prompts_when_pam_authtok_is_not_a_code() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(None, &[&code_at(NOW)]);
    h.authtok = Some(b"hunter2!".to_vec());
    assert_eq!(s.run(&mut h, &s.args(&["try_first_pass"])).0, Code::Success);
    assert_eq!(h.transcript, ["prompt(echo=false): Verification code: "]);
    assert_eq!(s.record().state.failures, 0, "a password is not a guess");
    let mut h = fake(None, &[]);
    h.authtok = Some(code_at(NOW + 30));
    assert_eq!(s.run(&mut h, &s.args(&["try_first_pass"])).0, Code::Success);
    assert!(h.transcript.is_empty());
}

#[test]
fn an_answer_after_prompt_timeout_is_refused_and_not_burned() {
    let s = Setup::new("prompt_timeout = 60");
    s.enroll(&totp_record());
    let code = code_at(NOW);
    let mut h = fake(None, &[&code]);
    h.think = Duration::from_secs(61);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert!(log[0].contains("prompt_timeout"), "{log:?}");
    let limit = 60;
    assert_eq!(s.last_reason(), Reason::AnsweredLate { waited: 61, limit });
    assert_eq!(s.record().devices[0].last_step, 0, "code not used up");
}

#[test]
fn the_time_spent_at_the_prompt_moves_the_totp_clock() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    // The user waits 100 s: the code of that moment is 3 steps after the
    // login started, and must be accepted.
    let mut h = fake(None, &[&code_at(NOW + 100)]);
    h.think = Duration::from_secs(100);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
}

#[test]
fn bad_arguments_and_configs_deny_and_are_logged() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    for extra in [&["nullokk"][..], &["max_attempts=lots"], &["colour=blue"]] {
        let mut h = fake(None, &[]);
        let (rc, log) = s.run(&mut h, &s.args(extra));
        assert_eq!(rc, Code::ServiceErr, "{extra:?}");
        assert!(h.transcript.is_empty());
        assert!(log[0].contains("outcome=error"), "{log:?}");
    }
    std::fs::write(&s.config, "max_attempts = \n").unwrap();
    let (rc, log) = s.run(&mut fake(None, &[]), &s.args(&[]));
    assert_eq!(rc, Code::ServiceErr);
    assert!(log[0].contains("config.toml:1"), "{log:?}");
    let missing = Args::parse(&["config=/nonexistent/otpgate.toml"]);
    assert_eq!(s.run(&mut fake(None, &[]), &missing).0, Code::ServiceErr);
}

#[test]
fn unknown_users_are_user_unknown() {
    let s = Setup::new("");
    let mut h = fake(None, &[]);
    h.user = Some("no-such-user-otpgate".into());
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::UserUnknown);
}

#[test]
fn a_clock_before_1970_denies() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let (rc, log) = s.run_at(None, &mut fake(None, &[]), &s.args(&[]));
    assert_eq!(rc, Code::SystemErr);
    assert!(log[0].contains("clock"), "{log:?}");
    assert_eq!(s.last_reason(), Reason::ClockBeforeEpoch);
}

#[test]
fn a_panic_becomes_system_err_and_is_logged() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(None, &[]);
    h.panic_on_prompt = true;
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::SystemErr);
    assert!(log[0].contains("panic"), "{log:?}");
    assert!(matches!(s.last_reason(), Reason::Panic(what) if what == "scripted panic"));
}

#[test]
fn backup_codes_work_once_and_say_how_many_are_left() {
    let s = Setup::new("max_attempts = 1");
    let mut r = totp_record();
    let codes = r.new_backup_codes(3, 8).unwrap();
    s.enroll(&r);
    let mut h = fake(None, &[codes[1].as_bytes()]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert!(log[0].contains("method=backup"));
    assert!(!log[0].contains(codes[1].as_str()));
    assert_eq!(h.transcript[1], "info: Backup code used; 2 left.");
    assert_eq!(s.record().backup.codes.len(), 2);
    let mut h = fake(None, &[codes[1].as_bytes()]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::AuthErr);
}

#[test]
fn silent_suppresses_messages_but_not_prompts() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(None, &[b"1", b"2", b"3"]);
    let ((rc, _), _) = s.run_logged(Some(NOW), &mut h, &s.args(&[]), false, true);
    assert_eq!(rc, Code::AuthErr);
    assert!(h.transcript.iter().all(|t| t.starts_with("prompt")));
}

#[test]
fn one_remembered_day_is_said_in_the_singular() {
    let s = Setup::new("remember_days = 1");
    s.enroll(&totp_record());
    let mut h = fake(Some("203.0.113.7"), &[&code_at(NOW), b"yes"]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    assert_eq!(
        h.transcript[1..],
        [
            "prompt(echo=true): Skip the code for logins from 203.0.113.7 for 1 day? [y/N] ",
            "info: Logins from 203.0.113.7 to otp-test skip the code for 1 day.",
        ]
    );
}

// ------------------------------------------------------------ sent codes

const CHANNELS: &str = "[channels.email]\ncommand = [\"/usr/sbin/sendmail\", \"-t\", \"-i\"]\n\
[channels.sms]\ncommand = [\"/usr/local/bin/sms\", \"{to}\"]\n";

fn email_record() -> UserRecord {
    let mut r = UserRecord::new_channels_only();
    r.set_destination(Kind::Email, Some("alice@example.org".into()));
    r
}

#[test]
fn enter_sends_a_code_by_email_and_that_code_logs_in_once() {
    let s = Setup::new(CHANNELS);
    s.enroll(&email_record());
    let mut h = fake(Some("203.0.113.7"), &[b"", b"<sent>"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success, "{log:?} {:?}", h.transcript);
    assert_eq!(
        h.transcript,
        [
            "prompt(echo=false): Verification code (Enter: send a code by email): ",
            "info: A code was sent by email to a***@example.org; it is valid for 10 minutes.",
            "prompt(echo=false): Verification code (Enter: send a code by email): ",
        ]
    );
    let message = h.sent.borrow()[0].clone();
    assert!(message.starts_with("To: alice@example.org\n"), "{message}");
    let code = sent_code(&message);
    assert!(log[0].contains("method=email outcome=sent"), "{log:?}");
    assert!(log[1].contains("method=email outcome=success"), "{log:?}");
    assert!(log.iter().all(|l| !l.contains(&code)), "code in the log");
    assert!(s.record().sent_codes.is_empty(), "used up");
    // The same code again is wrong.
    let mut again = fake(Some("203.0.113.7"), &[code.as_bytes()]);
    let (rc, _) = s.run(&mut again, &s.args(&["max_attempts=1"]));
    assert_eq!(rc, Code::AuthErr);
    assert_eq!(again.transcript.last().unwrap(), "error: Wrong code.");
}

#[test]
fn with_two_channels_a_numbered_menu_tries_another_way() {
    let s = Setup::new(CHANNELS);
    let mut r = email_record();
    r.set_destination(Kind::Sms, Some("+441632960961".into()));
    s.enroll(&r);
    let mut h = fake(Some("203.0.113.7"), &[b"2", b"<sent>"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success, "{log:?}");
    assert_eq!(
        h.transcript[0],
        "prompt(echo=false): Verification code (Enter: send by email, 2: send by SMS): "
    );
    assert!(
        h.transcript[1].contains("by SMS to +44*******961"),
        "{:?}",
        h.transcript
    );
    assert!(
        !h.sent.borrow()[0].starts_with("To:"),
        "an SMS has no headers"
    );
    assert!(log[1].contains("method=sms outcome=success"), "{log:?}");
}

#[test]
fn a_sent_code_is_refused_after_its_lifetime() {
    let s = Setup::new(&format!(
        "prompt_timeout = 3600\n[channels]\nverification_time = 3600\n{}",
        CHANNELS.replace(
            "[channels.email]\n",
            "[channels.email]\ncode_lifetime = 10\n"
        )
    ));
    s.enroll(&email_record());
    let mut h = fake(None, &[b"", b"<sent>"]);
    h.think = Duration::from_secs(601);
    let (rc, log) = s.run(&mut h, &s.args(&["max_attempts=1"]));
    assert_eq!(rc, Code::AuthErr, "{log:?}");
    assert!(
        h.transcript
            .last()
            .unwrap()
            .contains("That code has expired"),
        "{:?}",
        h.transcript
    );
    assert!(log.last().unwrap().contains("sent code expired"), "{log:?}");
    assert_eq!(
        refused(&log),
        [refused_line("-", "email", "expired", "sent code expired")]
    );
    assert_eq!(s.last_reason(), Reason::Refused(Refusal::Expired));
    assert_eq!(s.record().state.failures, 1, "counts as a wrong code");
}

#[test]
fn sends_beyond_the_hourly_limit_are_refused_and_use_up_prompts() {
    let s = Setup::new(&CHANNELS.replace(
        "[channels.email]\n",
        "[channels.email]\nmax_sends_per_hour = 2\n",
    ));
    s.enroll(&email_record());
    // Two sends give their prompts back; the three refused ones use up
    // max_attempts: five prompts in all.
    let mut h = fake(None, &[b"", b"", b"", b"", b""]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert_eq!(h.sent.borrow().len(), 2);
    let limited = log
        .iter()
        .filter(|l| l.contains("outcome=rate-limited"))
        .count();
    assert_eq!(limited, 3, "{log:?}");
    assert!(
        h.transcript
            .iter()
            .any(|t| t.contains("Too many codes were sent by email"))
    );
    assert_eq!(s.record().sends.len(), 2);
    assert_eq!(
        s.record().state.failures,
        0,
        "a refused send is not a wrong code"
    );
}

#[test]
fn wrong_codes_after_a_send_count_toward_the_lockout() {
    let s = Setup::new(&format!("lockout_after = 2\n{CHANNELS}"));
    s.enroll(&email_record());
    let mut h = fake(None, &[b"", b"000000", b"111111"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::MaxTries);
    assert!(log.last().unwrap().contains("locked out until"), "{log:?}");
    assert!(matches!(s.last_reason(), Reason::RefusedAndLocked { .. }));
    assert!(s.record().locked_until(NOW).is_some());
}

#[test]
fn a_failed_send_is_logged_and_the_prompt_comes_back() {
    let s = Setup::new(CHANNELS);
    s.enroll(&email_record());
    let mut h = fake(None, &[b"", b"123456", b"234567", b"345678"]);
    let (rc, log) = s.run_sending(Some(NOW), &mut h, &s.args(&[]), true);
    assert_eq!(rc, Code::AuthErr);
    assert!(
        log[0].contains("outcome=send-failed") && log[0].contains("relay down"),
        "{log:?}"
    );
    assert!(h.transcript[1].starts_with("error: The code could not be sent by email"));
    assert_eq!(
        h.transcript
            .iter()
            .filter(|t| t.starts_with("prompt"))
            .count(),
        4
    );
}

#[test]
fn the_whole_verification_is_bounded_by_verification_time() {
    let s = Setup::new(&format!("[channels]\nverification_time = 30\n{}", CHANNELS));
    s.enroll(&email_record());
    let mut h = fake(None, &[b"", b"<sent>"]);
    h.think = Duration::from_secs(20);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert!(
        log.last()
            .unwrap()
            .contains("channels.verification_time 30 s"),
        "{log:?}"
    );
}

#[test]
fn without_channels_configured_nothing_changes_for_app_users() {
    let s = Setup::new("");
    let mut r = totp_record();
    r.set_destination(Kind::Email, Some("alice@example.org".into()));
    s.enroll(&r);
    let mut h = fake(None, &[b"", &code_at(NOW)]);
    let (rc, _) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert_eq!(h.transcript[0], "prompt(echo=false): Verification code: ");
    assert!(h.sent.borrow().is_empty());
}

#[test]
fn a_user_with_only_an_unconfigured_channel_is_denied_with_a_reason() {
    let s = Setup::new("");
    s.enroll(&email_record());
    let mut h = fake(None, &[]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert!(log[0].contains("no usable method"), "{log:?}");
    assert_eq!(s.last_reason(), Reason::NoUsableMethod);
}

#[test]
fn result_codes_are_the_bindings_values_one_to_one() {
    let codes = [
        (Code::Success, PamResultCode::PAM_SUCCESS),
        (Code::ServiceErr, PamResultCode::PAM_SERVICE_ERR),
        (Code::SystemErr, PamResultCode::PAM_SYSTEM_ERR),
        (Code::AuthErr, PamResultCode::PAM_AUTH_ERR),
        (Code::UserUnknown, PamResultCode::PAM_USER_UNKNOWN),
        (Code::ConvErr, PamResultCode::PAM_CONV_ERR),
        (Code::Ignore, PamResultCode::PAM_IGNORE),
    ];
    for (code, pam) in &codes {
        assert_eq!(
            PamResultCode::try_from(code.raw()).ok().as_ref(),
            Some(pam),
            "{code:?}"
        );
    }
    let raws: std::collections::BTreeSet<i32> = codes.iter().map(|(c, _)| c.raw()).collect();
    assert_eq!(raws.len(), codes.len(), "two codes share a value");
    assert_eq!(Code::Other(24).raw(), 24);
}

#[test]
fn the_reasons_of_a_login_are_typed_in_order() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(None, &[b"000000", &code_at(NOW)]);
    assert_eq!(
        s.reasons(&mut h, &s.args(&[])),
        (
            Code::Success,
            vec![Reason::Refused(Refusal::Wrong), Reason::Accepted]
        )
    );
    let mut h = fake(None, &[]);
    h.user = Some("no-such-user-otpgate".into());
    assert_eq!(
        s.reasons(&mut h, &s.args(&[])),
        (Code::UserUnknown, vec![Reason::UnknownUser])
    );
    s.store.put(None);
    let mut h = fake(None, &[]);
    assert_eq!(
        s.reasons(&mut h, &s.args(&[])),
        (Code::Ignore, vec![Reason::NotEnrolled])
    );
}

/// Enrolled, but the record cannot be reached (a home not mounted): a
/// denial with its own message, never "not enrolled"; with `forward_pass`
/// the prompt is the same as for anyone.
#[test]
fn an_enrolled_user_whose_record_is_unavailable_is_denied_not_ignored() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    s.store.set_unavailable(true);
    let mut h = fake(None, &[]);
    let (rc, reasons) = s.reasons(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert!(
        matches!(&reasons[..], [Reason::SettingsUnavailable(e)] if e.contains("reset --user")),
        "{reasons:?}"
    );
    assert_eq!(
        h.transcript.last().unwrap(),
        "error: Your 2FA settings are unavailable; ask your administrator."
    );
    // Forgotten (`otpgate reset --user`), the record is what it is again.
    assert!(s.store.forget().unwrap());
    let mut h = fake(None, &[&code_at(NOW)]);
    assert_eq!(s.reasons(&mut h, &s.args(&[])).0, Code::Success);
}

#[test]
fn a_store_that_cannot_write_denies_and_the_code_stays_unused() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    s.store.set_read_only(true);
    let mut h = fake(None, &[&code_at(NOW)]);
    let (rc, reasons) = s.reasons(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::SystemErr);
    assert!(
        matches!(&reasons[..], [Reason::Store(e)] if e.contains("read-only")),
        "{reasons:?}"
    );
    assert_eq!(
        h.transcript.last().unwrap(),
        "error: Cannot update your 2FA settings; ask an administrator."
    );
    s.store.set_read_only(false);
    let mut h = fake(None, &[&code_at(NOW)]);
    assert_eq!(
        s.run(&mut h, &s.args(&[])).0,
        Code::Success,
        "the same code works once writable"
    );
}

// --- Two instances in one stack (issue #13, item 2) -------------------------

#[test]
fn a_second_instance_after_an_accepted_code_succeeds_without_asking_or_counting() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(Some("203.0.113.7"), &[&code_at(NOW)]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    let before = s.record();
    // The second line of the same stack, on the same handle.
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success, "{log:?}");
    assert_eq!(h.transcript, ["prompt(echo=false): Verification code: "]);
    assert_eq!(log.len(), 1, "{log:?}");
    for want in [
        "user=root",
        "method=already-verified",
        "outcome=success",
        "reason=\"already verified in this transaction (totp code accepted",
    ] {
        assert!(log[0].contains(want), "{want} missing in {}", log[0]);
    }
    assert_eq!(
        s.last_reason(),
        Reason::AlreadyVerified {
            method: "totp".into()
        }
    );
    assert_eq!(s.record(), before, "the record is not touched");
}

#[test]
fn a_denial_an_ignore_or_a_pass_without_a_code_lets_the_next_instance_ask() {
    let s = Setup::new("max_attempts = 1");
    s.enroll(&totp_record());
    // Denied by the first line: the second asks, and a wrong code counts.
    let mut h = fake(None, &[b"000000", b"111111"]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::AuthErr);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::AuthErr);
    assert_eq!(h.transcript.len(), 4, "{:?}", h.transcript);
    assert_eq!(s.record().state.failures, 2);
    assert!(h.verified.is_none());
    // A trusted network passes without a code: nothing is recorded.
    let mut h = fake(Some("10.1.2.3"), &[]);
    let trusted = s.args(&["trusted_networks=10.0.0.0/8"]);
    assert_eq!(s.run(&mut h, &trusted).0, Code::Success);
    assert!(h.verified.is_none());
    // Not enrolled: ignored, nothing recorded.
    s.store.put(None);
    let mut h = fake(None, &[]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Ignore);
    assert!(h.verified.is_none());
}

#[test]
fn a_record_for_another_user_or_older_than_prompt_timeout_is_not_honoured() {
    let s = Setup::new("prompt_timeout = 60");
    s.enroll(&totp_record());
    let mut h = fake(None, &[&code_at(NOW)]);
    assert_eq!(s.run(&mut h, &s.args(&[])).0, Code::Success);
    let recorded = h.verified.clone().expect("recorded");
    assert_eq!(
        Verified::decode(&recorded),
        Some(Verified {
            user: "root".into(),
            at: NOW,
            method: "totp".into()
        })
    );
    // PAM_USER changed between the lines: the record is root's, not daemon's.
    let mut other = fake(None, &[]);
    other.user = Some("daemon".into());
    other.verified = Some(recorded.clone());
    s.run(&mut other, &s.args(&[]));
    assert_ne!(
        s.last_reason(),
        Reason::AlreadyVerified {
            method: "totp".into()
        }
    );
    // A handle kept for a later pam_authenticate: asked again.
    let mut later = fake(None, &[&code_at(NOW + 90)]);
    later.verified = Some(recorded.clone());
    assert_eq!(
        s.run_at(Some(NOW + 90), &mut later, &s.args(&[])).0,
        Code::Success
    );
    assert_eq!(later.transcript.len(), 1, "{:?}", later.transcript);
    assert_eq!(s.last_reason(), Reason::Accepted);
    // A clock set back: not honoured either (asked; that older code is
    // refused, the record having moved on).
    let mut back = fake(None, &[&code_at(NOW - 60)]);
    back.verified = Some(recorded);
    s.run_at(Some(NOW - 60), &mut back, &s.args(&["max_attempts=1"]));
    assert_eq!(
        back.transcript[0],
        "prompt(echo=false): Verification code: "
    );
}

#[test]
fn the_verified_record_reads_back_only_in_its_own_format() {
    let v = Verified {
        user: "ann marie".into(),
        at: 1_700_000_000,
        method: "backup".into(),
    };
    assert_eq!(
        v.encode(),
        b"otpgate-verified-1 1700000000 backup ann marie".to_vec()
    );
    assert_eq!(Verified::decode(&v.encode()), Some(v));
    for bad in [
        &b""[..],
        b"otpgate-verified-1",
        b"otpgate-verified-1 x totp root",
        b"otpgate-verified-1 1 totp ",
        b"otpgate-verified-2 1 totp root",
        b"root",
        b"\xff\xfe",
    ] {
        assert_eq!(Verified::decode(bad), None, "{bad:?}");
    }
}

// ------------------------------------------------- refused answers (#13)

/// Issue #13, item 3: one wrong code, then the client goes away (the
/// conversation fails): the guess counted in the file and left no line.
/// Now its line is written when it is refused, before the user is told.
#[test]
fn a_wrong_code_then_the_end_of_the_conversation_leaves_a_refused_line() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(Some("198.51.100.4"), &[b"000000"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::ConvErr);
    assert_eq!(s.record().state.failures, 1);
    assert_eq!(
        log,
        [
            refused_line("198.51.100.4", "-", "wrong", "wrong code"),
            "user=root service=otp-test rhost=198.51.100.4 tty=ssh method=- \
             outcome=error reason=\"conversation failed\""
                .to_string(),
        ]
    );
}

/// Issue #13, item 3: a replayed code then a backup code logged only the
/// success. Now the replay has its line, naming the method it was a code
/// of, and the code itself is in no line.
#[test]
fn a_replayed_code_then_a_backup_code_logs_both() {
    let s = Setup::new("");
    let mut r = totp_record();
    let backups = r.new_backup_codes(2, 8).unwrap();
    s.enroll(&r);
    let code = code_at(NOW);
    let rhost = Some("203.0.113.7");
    assert_eq!(
        s.run(&mut fake(rhost, &[&code]), &s.args(&[])).0,
        Code::Success
    );
    let mut h = fake(rhost, &[&code, backups[0].as_bytes()]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::Success);
    assert_eq!(
        log,
        [
            refused_line("203.0.113.7", "totp", "replayed", "code already used"),
            "user=root service=otp-test rhost=203.0.113.7 tty=ssh method=backup \
             outcome=success reason=\"code accepted\""
                .to_string(),
        ]
    );
    let code = String::from_utf8(code).unwrap();
    assert!(
        log.iter()
            .all(|l| !l.contains(&code) && !l.contains(backups[0].as_str())),
        "a code in the log: {log:?}"
    );
}

/// Every refused answer has its line, and the decision its own: the lines
/// an auditor counts are the guesses, whatever the login came to.
#[test]
fn each_refused_answer_has_a_line_and_the_decision_one_more() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(Some("192.0.2.1"), &[b"000000", b"not a code", b"111111"]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::AuthErr);
    assert_eq!(
        refused(&log),
        vec![refused_line("192.0.2.1", "-", "wrong", "wrong code"); 3]
    );
    assert_eq!(
        decisions(&log),
        [
            "user=root service=otp-test rhost=192.0.2.1 tty=ssh method=- \
          outcome=deny reason=\"wrong code\""
        ]
    );
    // A wrong code then the right one: the guess, then the success.
    let mut h = fake(None, &[b"000000", &code_at(NOW)]);
    let (_, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(
        refused(&log),
        [refused_line("-", "-", "wrong", "wrong code")]
    );
    assert!(log[1].contains("outcome=success"), "{log:?}");
}

/// Another login locked the account while this one was asked: the answer
/// is refused unread, `why=locked`.
#[test]
fn an_answer_refused_because_another_login_locked_the_account_says_locked() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let store = s.store.clone();
    let mut h = fake(Some("192.0.2.1"), &[&code_at(NOW)]);
    h.meanwhile = Some(Box::new(move || {
        let mut r = store.snapshot().unwrap();
        r.state.locked_until = NOW + 600;
        store.put(Some(r));
    }));
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::MaxTries);
    assert_eq!(
        refused(&log),
        [refused_line(
            "192.0.2.1",
            "-",
            "locked",
            "locked out by a concurrent login"
        )]
    );
    assert_eq!(decisions(&log).len(), 1, "{log:?}");
}

/// With `forward_pass` a locked source still gets the prompt; its answer
/// is refused unread and logged as a guess. Without `forward_pass` a locked
/// account is asked nothing: the decision alone.
#[test]
fn a_locked_source_answer_is_logged_as_refused_and_a_locked_account_unasked_is_not() {
    let s = Setup::new("");
    let mut r = totp_record();
    r.state.locked_until = NOW + 60;
    s.enroll(&r);
    let mut h = fake(Some("198.51.100.4"), &[b"pw000000"]);
    let (rc, log) = s.run(&mut h, &s.args(&["forward_pass"]));
    assert_eq!(rc, Code::MaxTries);
    assert_eq!(
        refused(&log),
        [refused_line(
            "198.51.100.4",
            "-",
            "locked",
            "locked out for 60 more seconds"
        )]
    );
    let mut h = fake(Some("198.51.100.4"), &[]);
    let (rc, log) = s.run(&mut h, &s.args(&[]));
    assert_eq!(rc, Code::MaxTries);
    assert!(refused(&log).is_empty(), "{log:?}");
    assert_eq!(decisions(&log).len(), 1, "{log:?}");
}

/// A password in `PAM_AUTHTOK` that is not a code (`try_first_pass`) is no
/// guess: no refused line, and not counted.
#[test]
fn a_password_tried_as_a_code_is_not_a_refused_answer() {
    let s = Setup::new("");
    s.enroll(&totp_record());
    let mut h = fake(None, &[&code_at(NOW)]);
    h.authtok = Some(b"hunter2!".to_vec());
    let (rc, log) = s.run(&mut h, &s.args(&["try_first_pass"]));
    assert_eq!(rc, Code::Success);
    assert!(refused(&log).is_empty(), "{log:?}");
}

mod ssh_keys;
