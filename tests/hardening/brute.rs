//! Brute force: the guess rate the default limits leave an attacker, the
//! expected time to guess a code, and tests that the module holds to it:
//! the login flow (the same code as in `pam_otpgate.so`) driven with a fake
//! clock through a simulated day of non-stop guessing, and the real module
//! refusing a correct code once locked.

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use otpgate_config::SystemConfig;
use otpgate_config::otp::{Algorithm, Generator, Secret, time_step};
use otpgate_config::store::Configured;
use otpgate_tests::*;
use pam_otpgate::args::Args;
use pam_otpgate::flow::{self, Clock, Code, CommandSender, Env, Handle, Secret as Bytes, Verified};
use pam_otpgate::log::Memory;

/// One login through the flow with the configured (file) store and the
/// fake clock.
fn authenticate(h: &mut dyn Handle, clock: &dyn Clock, log: &mut Memory, args: &Args) -> Code {
    let env = Env {
        clock,
        sender: &CommandSender::default(),
        stores: &Configured,
    };
    flow::authenticate(h, log, args, false, &env)
}

use crate::{Rng, figure, keep_log, secret};

/// The support crate's fake clock as the flow's `Clock` (a type of this
/// crate: the orphan rule forbids implementing one crate's trait for
/// another's type). Its monotonic reading stays at zero: no prompt waits.
struct SimClock(FakeClock);

impl Clock for SimClock {
    fn unix_now(&self) -> Option<u64> {
        self.0.unix_now()
    }
    fn monotonic(&self) -> Duration {
        self.0.monotonic()
    }
    fn local_hhmm(&self, unix: u64) -> String {
        self.0.local_hhmm(unix)
    }
}

/// An attacker at the prompt: answers every prompt with `answer()`.
struct Attacker<'a> {
    answer: &'a dyn Fn() -> String,
    prompts: usize,
    messages: RefCell<Vec<String>>,
}

impl Handle for Attacker<'_> {
    fn user(&mut self) -> Result<String, Code> {
        Ok("root".into())
    }
    fn rhost(&self) -> Option<String> {
        Some("203.0.113.66".into())
    }
    fn service(&self) -> Option<String> {
        Some("sshd".into())
    }
    fn tty(&self) -> Option<String> {
        None
    }
    fn env(&self, _name: &str) -> Option<String> {
        None
    }
    fn authtok(&self) -> Option<Bytes> {
        None
    }
    fn set_authtok(&mut self, _token: &[u8]) -> Result<(), Code> {
        Ok(())
    }
    fn prompt(&mut self, _text: &str, _echo: bool) -> Result<Option<Bytes>, Code> {
        self.prompts += 1;
        Ok(Some(zeroize::Zeroizing::new((self.answer)().into_bytes())))
    }
    fn info(&mut self, text: &str) {
        self.messages.borrow_mut().push(text.into());
    }
    fn error(&mut self, text: &str) {
        self.messages.borrow_mut().push(text.into());
    }
    // Every guess is a new connection, so a new handle: nothing recorded
    // by an earlier login is there.
    fn verified(&self) -> Option<Verified> {
        None
    }
    fn set_verified(&mut self, _verified: &Verified) -> Result<(), Code> {
        Ok(())
    }
}

/// Probability that one guess is right: any of the 2w+1 TOTP codes in the
/// window, or any of the backup codes.
fn p_guess(c: &SystemConfig) -> f64 {
    let totp = f64::from(2 * c.totp_window + 1) / 10f64.powi(6);
    let backup = f64::from(c.backup_codes) / 10f64.powi(i32::from(c.backup_code_digits));
    totp + backup
}

pub fn the_default_limits_allow_40_guesses_an_hour() {
    need!(require_root());
    let defaults = SystemConfig::default();
    // The arithmetic, from the defaults.
    let per_hour = f64::from(defaults.lockout_after) * 60.0 / f64::from(defaults.lockout_minutes);
    let p = p_guess(&defaults);
    let expected_hours = 1.0 / p / per_hour;
    let half_hours = std::f64::consts::LN_2 / p / per_hour;

    // The simulation: root's file in a root-owned temp dir, the default
    // config except where the file lives.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o700)).expect("chmod");
    let config = dir.path().join("config.toml");
    write_private(
        &config,
        format!("user_file = \"{}/%u.toml\"\n", dir.path().display()).as_bytes(),
    );
    let s = new_secret();
    secret(&s);
    let user_file = dir.path().join("root.toml");
    write_private(
        &user_file,
        totp_record_with(&s, Algorithm::SHA1, 6)
            .to_toml()
            .as_bytes(),
    );
    let generator = Generator::totp(
        &Secret::from_base32(&s).expect("secret"),
        Algorithm::SHA1,
        6,
        30,
    )
    .expect("generator");
    let args = Args::parse(&[format!("config={}", config.display())]);
    assert!(args.errors.is_empty(), "{:?}", args.errors);

    const START: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;
    let clock = SimClock(FakeClock::at(START));
    let rng = RefCell::new(Rng::new("brute"));
    // Always wrong at the moment of the guess (a right guess would end the
    // experiment; its odds are the figure above).
    let wrong = || loop {
        let guess = format!("{:06}", rng.borrow_mut().below(1_000_000));
        let step = time_step(clock.0.now(), 30);
        if generator
            .matching_steps(&guess, step.saturating_sub(1), step + 1)
            .is_empty()
        {
            return guess;
        }
    };
    let (mut logins, mut attempts, mut locked_refusals) = (0u64, 0usize, 0u64);
    let mut log = Memory::default();
    // The attacker starts a login every second, all day; while locked the
    // module answers without a prompt, so we skip to the end of the lock.
    while clock.0.now() < START + DAY {
        let mut attacker = Attacker {
            answer: &wrong,
            prompts: 0,
            messages: RefCell::new(Vec::new()),
        };
        let code = authenticate(&mut attacker, &clock, &mut log, &args);
        assert!(
            matches!(code, Code::AuthErr | Code::MaxTries),
            "{code:?} {:?}",
            attacker.messages
        );
        if attacker.prompts > 0 {
            logins += 1;
        }
        attempts += attacker.prompts;
        let state = root_state(&user_file);
        if attacker.prompts == 0 {
            locked_refusals += 1;
            assert!(state.locked_until > clock.0.now());
            // Every second up to the end of the lock would be refused alike.
            locked_refusals += state.locked_until - clock.0.now() - 1;
            clock.0.set_now(state.locked_until);
        } else {
            clock.0.set_now(clock.0.now() + 1);
        }
    }
    let measured = attempts as f64 / 24.0;
    assert!(
        measured <= per_hour && measured >= per_hour * 0.97,
        "{attempts} guesses in 24 h"
    );
    // A correct code is refused one second before the lock ends and
    // accepted when it has ended.
    let mut state = root_state(&user_file);
    if state.locked_until <= clock.0.now() {
        // Lock the account (10 wrong codes) to test the edge.
        while state.locked_until <= clock.0.now() {
            let mut a = Attacker {
                answer: &wrong,
                prompts: 0,
                messages: RefCell::new(Vec::new()),
            };
            authenticate(&mut a, &clock, &mut log, &args);
            state = root_state(&user_file);
        }
    }
    let right = || {
        generator
            .code_at_step(time_step(clock.0.now(), 30))
            .to_string()
    };
    clock.0.set_now(state.locked_until - 1);
    let mut a = Attacker {
        answer: &right,
        prompts: 0,
        messages: RefCell::new(Vec::new()),
    };
    assert_eq!(
        authenticate(&mut a, &clock, &mut log, &args),
        Code::MaxTries
    );
    assert_eq!(a.prompts, 0);
    clock.0.set_now(state.locked_until);
    let mut a = Attacker {
        answer: &right,
        prompts: 0,
        messages: RefCell::new(Vec::new()),
    };
    assert_eq!(authenticate(&mut a, &clock, &mut log, &args), Code::Success);
    for (_, line) in &log.lines {
        assert!(!line.contains(&s), "the secret in a log line");
    }

    figure(
        "bruteforce.rate",
        format!(
            "defaults (lockout_after={} per lockout_minutes={}, max_attempts={}): at most {per_hour:.0} guesses per hour per account; measured {measured:.1}/h ({attempts} guesses, {logins} logins with a prompt, {locked_refusals} refused while locked) over 24 h of non-stop guessing with a fake clock; the right code is refused 1 s before the lock ends and accepted at its end",
            defaults.lockout_after, defaults.lockout_minutes, defaults.max_attempts
        ),
    );
    figure(
        "bruteforce.time_to_guess",
        format!(
            "a guess is right with p = {}/10^6 (TOTP, window ±{}) + {}/10^{} (backup codes) = {p:.2e}; expected {:.0} guesses = {expected_hours:.0} h ({:.0} days) at {per_hour:.0}/h; 50% chance after {half_hours:.0} h ({:.0} days); with lockout_after=0 only the attempt speed limits it",
            2 * defaults.totp_window + 1,
            defaults.totp_window,
            defaults.backup_codes,
            defaults.backup_code_digits,
            1.0 / p,
            expected_hours / 24.0,
            half_hours / 24.0
        ),
    );
}

pub fn after_lockout_after_failures_a_correct_code_is_refused() {
    let h = need!(Harness::new(
        "max_attempts = 3\nlockout_after = 3\nlockout_minutes = 1"
    ));
    h.otp_service("");
    let s = h.enroll();
    secret(&s);
    avoid_step_edge();
    let at = now();
    let wrong = crate::races::wrong_codes(&s, at, 3, &mut Rng::new("brute.module"));
    let mut login = h.login().rhost("203.0.113.67");
    for w in &wrong {
        login = login.answer(w);
    }
    let run = login.run();
    run.assert("PAM_MAXTRIES");
    assert_eq!(run.prompts().len(), 3);
    assert!(
        run.messages()
            .iter()
            .any(|m| m.contains("Too many wrong codes. Account locked until")),
        "{run:#?}"
    );
    let state = h.record("root").state;
    assert_eq!(state.failures, 0);
    assert!(
        (at + 60..=now() + 60).contains(&state.locked_until),
        "{state:?}"
    );
    // The right code, now: refused without a prompt, and not counted.
    let code = totp_at(&s, now());
    secret(&code);
    let run = h.login().rhost("203.0.113.67").answer(&code).run();
    run.assert("PAM_MAXTRIES");
    assert!(run.prompts().is_empty(), "{run:#?}");
    assert_eq!(h.record("root").state, state);
    keep_log(&h);
    figure(
        "bruteforce.module",
        "through pam_otpgate.so with lockout_after=3, lockout_minutes=1: the third wrong code locks the account for 60 s; the right code is then refused without a prompt and the file is unchanged",
    );
}

/// Root's login state as the module reads it (file and state file).
fn root_state(user_file: &std::path::Path) -> otpgate_config::record::State {
    record_at(user_file, "root")
        .expect("read")
        .expect("enrolled")
        .state
}
