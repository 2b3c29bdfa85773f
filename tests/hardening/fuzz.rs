//! Bad input, property-tested (proptest, stable Rust): the user-file
//! parser, the config parser, module arguments (pam-module's `Args::parse`
//! and `SystemConfig::with_overrides`) and the prompt-answer parser, with
//! structured generators (valid files with random fields, then mutated)
//! as well as random bytes. At least 1,000,000 cases per run, counted;
//! zero panics (proptest turns a panic into a failing, shrunk case).
//!
//! The google-authenticator importer (`otpgate_config::import`) is fuzzed
//! the same way, from structured `~/.google_authenticator` files.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use otpgate_config::import::parse_google_authenticator;
use otpgate_config::record::VerifyPolicy;
use otpgate_config::{Account, Answer, SystemConfig, UserRecord};
use pam_otpgate::args::Args;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::figure;

/// Generated inputs per target (each also mutated [`MUTANTS`] more times,
/// answers [`ANSWER_MUTANTS`]); the sum is the figure (at least 1,000,000).
const USER_FILE_CASES: u32 = 26_000;
const CONFIG_CASES: u32 = 22_000;
const ARGS_CASES: u32 = 22_000;
const ANSWER_CASES: u32 = 16_000;
const GA_CASES: u32 = 12_000;
/// Extra random answers per generated one (a parse costs microseconds).
const ANSWER_MUTANTS: u64 = 31;

/// Tokens that mean something to TOML or to our schemas, for mutations.
const TOKENS: &[&str] = &[
    "=",
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\n",
    "\\",
    "\\u0000",
    "\"\"\"",
    "0",
    "-1",
    "1e999",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "nan",
    "inf",
    "true",
    "1979-05-27T07:32:00Z",
    "version",
    "[totp]",
    "[hotp]",
    "[backup]",
    "[state]",
    "[[trusted_host]]",
    "[policy]",
    "secret",
    "digits",
    "period",
    "window",
    "counter",
    "lookahead",
    "codes",
    "last_step",
    "failures",
    "locked_until",
    "user_file",
    "trusted_networks",
    "max_attempts",
    "lockout_after",
    "totp_window",
    "%h",
    "%u",
    "%%",
    "~",
    "/",
    "::ffff:10.0.0.1/128",
    "10.0.0.0/33",
    "sha256$",
    "ü",
    "\u{feff}",
];

/// A mutation of a text: at a relative position, do one of several edits.
#[derive(Debug, Clone)]
enum Edit {
    Insert(f64, usize),
    Delete(f64, usize),
    Flip(f64, u8),
    DuplicateLine(f64),
    Truncate(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0.0..1.0f64, 0..TOKENS.len()).prop_map(|(p, t)| Edit::Insert(p, t)),
        2 => (0.0..1.0f64, 1..16usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        2 => (0.0..1.0f64, any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        1 => (0.0..1.0f64).prop_map(Edit::DuplicateLine),
        1 => (0.0..1.0f64).prop_map(Edit::Truncate),
    ]
}

/// Applies `edits` to `text` (byte-wise; the result may not be UTF-8, so
/// it is converted lossily, as the store refuses non-UTF-8 before parsing).
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut b = text.as_bytes().to_vec();
    let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len);
    for e in edits {
        match *e {
            Edit::Insert(p, t) => {
                let i = at(p, b.len());
                b.splice(i..i, TOKENS[t].bytes());
            }
            Edit::Delete(p, n) => {
                let i = at(p, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Edit::Flip(p, x) => {
                if !b.is_empty() {
                    let i = at(p, b.len() - 1);
                    b[i] = x;
                }
            }
            Edit::DuplicateLine(p) => {
                let i = at(p, b.len());
                let start = b[..i]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |s| s + 1);
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |e| i + e + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
            Edit::Truncate(p) => {
                let i = at(p, b.len());
                b.truncate(i);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// `n` random edits from `rng` (fast: many mutants per generated file).
fn random_edits(rng: &mut crate::Rng, n: usize) -> Vec<Edit> {
    (0..n)
        .map(|_| {
            let p = (rng.below(1 << 20) as f64) / f64::from(1 << 20);
            match rng.below(10) {
                0..=3 => Edit::Insert(p, rng.below(TOKENS.len() as u64) as usize),
                4 | 5 => Edit::Delete(p, 1 + rng.below(15) as usize),
                6 | 7 => Edit::Flip(p, rng.below(256) as u8),
                8 => Edit::DuplicateLine(p),
                _ => Edit::Truncate(p),
            }
        })
        .collect()
}

/// Mutants per generated input: proptest's generation costs far more than
/// a parse in a debug build, so each generated file is also mutated this
/// many times with a seeded RNG (a failure shrinks to its file and seed).
const MUTANTS: u64 = 8;

fn int_edge() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..100).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("\"6\"".to_string()),
    ]
}

const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn secret_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(0..32usize, 0..220)
            .prop_map(|v| v.into_iter().map(|i| BASE32[i] as char).collect()),
        1 => "[a-z2-7= ]{0,40}",
        1 => ".{0,30}",
    ]
}

/// A hashed backup code: one real entry, near misses and junk.
fn backup_entry() -> impl Strategy<Value = String> {
    let good = otpgate_config::backup::hash("12345678").expect("hash");
    prop_oneof![
        4 => Just(good.clone()),
        1 => Just(good.replace("sha256$", "sha512$")),
        1 => (0..good.len()).prop_map(move |n| good[..n].to_string()),
        1 => "[0-9a-f$]{0,100}",
    ]
}

/// A user file from structured random fields (valid more often than not).
fn user_file() -> impl Strategy<Value = String> {
    (
        prop_oneof![8 => Just("1".to_string()), 1 => int_edge()],
        any::<bool>(),
        secret_text(),
        prop_oneof![Just("SHA1"), Just("SHA256"), Just("SHA512"), Just("MD5"), Just("sha1")],
        prop_oneof![6 => (5u8..10).prop_map(|d| d.to_string()), 1 => int_edge()],
        prop_oneof![4 => Just("30".to_string()), 2 => (0u64..200).prop_map(|n| n.to_string()), 1 => int_edge()],
        proptest::option::of(int_edge()),
        proptest::collection::vec(backup_entry(), 0..6),
        (int_edge(), int_edge(), int_edge()),
        proptest::collection::vec(("[0-9a-f.:]{0,20}", int_edge()), 0..3),
        channel_tables(),
    )
        .prop_map(
            |(version, totp, secret, alg, digits, period, window, codes, state, hosts, channels)| {
                let mut t = format!("version = {version}\n");
                if totp {
                    t += &format!(
                        "[totp]\nsecret = \"{secret}\"\nalgorithm = \"{alg}\"\ndigits = {digits}\nperiod = {period}\n"
                    );
                    if let Some(w) = window {
                        t += &format!("window = {w}\n");
                    }
                } else {
                    t += &format!(
                        "[hotp]\nsecret = \"{secret}\"\nalgorithm = \"{alg}\"\ndigits = {digits}\ncounter = {period}\n"
                    );
                    if let Some(w) = window {
                        t += &format!("lookahead = {w}\n");
                    }
                }
                let list: Vec<String> = codes.iter().map(|c| format!("\"{c}\"")).collect();
                t += &format!("[backup]\ncodes = [{}]\n", list.join(", "));
                t += &format!(
                    "[state]\nlast_step = {}\nfailures = {}\nlocked_until = {}\n",
                    state.0, state.1, state.2
                );
                for (host, until) in hosts {
                    t += &format!("[[trusted_host]]\nhost = \"{host}\"\nuntil = {until}\n");
                }
                t += &channels;
                t
            },
        )
}

/// A `~/.google_authenticator` file from structured random fields.
fn ga_file() -> impl Strategy<Value = String> {
    (
        secret_text(),
        proptest::collection::vec(
            prop_oneof![
                Just("\" TOTP_AUTH".to_string()),
                int_edge().prop_map(|n| format!("\" HOTP_COUNTER {n}")),
                int_edge().prop_map(|n| format!("\" WINDOW_SIZE {n}")),
                int_edge().prop_map(|n| format!("\" STEP_SIZE {n}")),
                int_edge().prop_map(|n| format!("\" DIGITS {n}")),
                prop_oneof![Just("SHA1"), Just("SHA256"), Just("SHA512"), Just("MD5")]
                    .prop_map(|a| format!("\" ALGORITHM {a}")),
                (int_edge(), int_edge())
                    .prop_map(|(a, b)| format!("\" RATE_LIMIT {a} {b} 1700000000")),
                proptest::collection::vec(int_edge(), 0..4)
                    .prop_map(|v| format!("\" DISALLOW_REUSE {}", v.join(" "))),
                "\" [A-Z_]{0,12}( [0-9]{0,4})?",
            ],
            0..6,
        ),
        proptest::collection::vec("[0-9]{5,17}", 0..6),
    )
        .prop_map(|(secret, options, codes)| {
            let mut t = format!("{secret}\n");
            for o in options {
                t += &o;
                t.push('\n');
            }
            for c in codes {
                t += &c;
                t.push('\n');
            }
            t
        })
}

/// The user file's channel tables: `[email]`, `[sms]`, `[[sent_code]]`,
/// `[[send]]`, with plausible, hostile (header injection) and junk values.
fn channel_tables() -> impl Strategy<Value = String> {
    let address = prop_oneof![
        Just("alice@example.org".to_string()),
        Just("alice@example.org\\nBcc: eve@evil.example".to_string()),
        Just("-oQ/tmp@x".to_string()),
        "[a-z@.<>,\" -]{0,30}",
    ];
    let number = prop_oneof![
        Just("+441632960961".to_string()),
        Just("+1".to_string()),
        "[+0-9 ()-]{0,20}",
    ];
    let kind = prop_oneof![Just("email"), Just("sms"), Just("fax")];
    (
        proptest::option::of(address),
        proptest::option::of(number),
        proptest::collection::vec((kind.clone(), backup_entry(), int_edge()), 0..3),
        proptest::collection::vec((kind, int_edge()), 0..3),
    )
        .prop_map(|(address, number, sent, sends)| {
            let mut t = String::new();
            if let Some(a) = address {
                t += &format!("[email]\naddress = \"{a}\"\n");
            }
            if let Some(n) = number {
                t += &format!("[sms]\nnumber = \"{n}\"\n");
            }
            for (channel, code, expires) in sent {
                t += &format!(
                    "[[sent_code]]\nchannel = \"{channel}\"\ncode = \"{code}\"\nexpires = {expires}\n"
                );
            }
            for (channel, at) in sends {
                t += &format!("[[send]]\nchannel = \"{channel}\"\nat = {at}\n");
            }
            t
        })
}

/// A system config from structured random fields.
fn config_file() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("~/.config/otpgate/user.toml".to_string()),
            Just("/var/lib/otpgate/%u.toml".to_string()),
            Just("%h/.otp/%u".to_string()),
            "[~%/a-z.]{0,30}",
        ],
        proptest::collection::vec(
            prop_oneof![
                Just("10.0.0.0/8".to_string()),
                Just("2001:db8::/32".to_string()),
                Just("::ffff:192.0.2.1".to_string()),
                "[0-9a-f.:/]{0,24}",
            ],
            0..4,
        ),
        prop_oneof![Just("require"), Just("skip"), Just("maybe")],
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("remember_days"),
                    Just("max_attempts"),
                    Just("lockout_after"),
                    Just("lockout_minutes"),
                    Just("prompt_timeout"),
                    Just("totp_window"),
                    Just("hotp_lookahead"),
                    Just("backup_codes"),
                    Just("backup_code_digits"),
                    Just("unknown_key"),
                ],
                int_edge(),
            ),
            0..6,
        ),
        prop_oneof![Just("enrolled"), Just("all"), Just("none")],
        proptest::collection::vec("[a-z_]{0,8}", 0..3),
    )
        .prop_map(|(user_file, nets, console, ints, require, groups)| {
            let nets: Vec<String> = nets.iter().map(|n| format!("\"{n}\"")).collect();
            let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
            let mut t = format!(
                "user_file = \"{user_file}\"\ntrusted_networks = [{}]\nlocal_console = \"{console}\"\n",
                nets.join(", ")
            );
            for (k, v) in ints {
                t += &format!("{k} = {v}\n");
            }
            t += &format!(
                "[policy]\nrequire = \"{require}\"\nrequire_groups = [{}]\nexempt_groups = []\n",
                groups.join(", ")
            );
            t
        })
}

/// One module argument, structured or raw bytes.
fn module_arg() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("config"),
        Just("syslog_socket"),
        Just("user_file"),
        Just("trusted_networks"),
        Just("local_console"),
        Just("max_attempts"),
        Just("lockout_after"),
        Just("totp_window"),
        Just("policy.require"),
        Just("policy.exempt_groups"),
        Just("policy"),
        Just("policy.require.x"),
        Just("debug"),
        Just("nullok"),
        Just(""),
        Just("."),
    ];
    let value = prop_oneof![
        Just("".to_string()),
        Just("all".to_string()),
        Just("10.0.0.0/8,fd00::/8".to_string()),
        Just("/tmp/x".to_string()),
        Just("=".to_string()),
        int_edge(),
        "[ -~]{0,20}",
    ];
    prop_oneof![
        6 => (key, value).prop_map(|(k, v)| format!("{k}={v}").into_bytes()),
        2 => prop_oneof![
            Just("nullok"),
            Just("debug"),
            Just("use_first_pass"),
            Just("try_first_pass"),
            Just("forward_pass"),
            Just("echo_verification_code"),
            Just("nullokk"),
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

/// Runs `cases` cases of `strategy` through `test`, counting every
/// execution into `count`; panics (after proptest's shrinking) on a
/// failing case.
fn run<S: Strategy>(
    name: &str,
    cases: u32,
    count: &AtomicU64,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config(cases));
    let start = Instant::now();
    let result = runner.run(&strategy, |v| {
        count.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    println!(
        "fuzz {name}: {} cases in {:.1?}",
        count.load(Ordering::Relaxed),
        start.elapsed()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

pub fn a_million_generated_inputs_never_panic_a_parser() {
    let path = Path::new("/fuzz/user.toml");
    let root = Account::lookup("root").ok();
    let counts: [AtomicU64; 5] = Default::default();
    let start = Instant::now();
    let policy = VerifyPolicy {
        totp_window: 1,
        hotp_lookahead: 3,
    };
    std::thread::scope(|s| {
        // The user file: mutated structured files; what parses must
        // round-trip and survive verification at any time.
        s.spawn(|| {
            run(
                "user file",
                USER_FILE_CASES,
                &counts[0],
                (
                    user_file(),
                    proptest::collection::vec(edit(), 0..4),
                    any::<u64>(),
                    any::<u64>(),
                ),
                |(base, edits, now, seed)| {
                    let mut rng = crate::Rng::seeded(seed);
                    for k in 0..=MUTANTS {
                        let text = if k == 0 {
                            mutate(&base, &edits)
                        } else {
                            let n = 1 + rng.below(4) as usize;
                            mutate(&base, &random_edits(&mut rng, n))
                        };
                        if k > 0 {
                            counts[0].fetch_add(1, Ordering::Relaxed);
                        }
                        if let Ok(mut r) = UserRecord::from_toml(path, &text) {
                            let again = UserRecord::from_toml(path, &r.to_toml());
                            // Written in this build's form: version 1 and 2
                            // files come back as version 3, the same record.
                            r.version = otpgate_config::record::VERSION;
                            prop_assert_eq!(
                                again.as_ref().ok(),
                                Some(&r),
                                "round trip of {}",
                                text
                            );
                            // Verification at any time, with any counter (the
                            // look-ahead capped: it only repeats the HMAC).
                            for h in r.devices.iter_mut().filter_map(|d| d.hotp.as_mut()) {
                                h.lookahead = h.lookahead.map(|l| l.min(3));
                            }
                            let a = Answer::parse(b"123456").expect("digits");
                            let _ = r.verify(&a, now, policy);
                            let _ = r.locked_until(now);
                            r.prune_trusted_hosts(now);
                        }
                    }
                    Ok(())
                },
            );
        });
        // The google-authenticator importer: what it accepts is a valid
        // record that round-trips.
        s.spawn(|| {
            run(
                "google-authenticator file",
                GA_CASES,
                &counts[4],
                (
                    ga_file(),
                    proptest::collection::vec(edit(), 0..4),
                    any::<u64>(),
                ),
                |(base, edits, seed)| {
                    let ga_path = Path::new("/fuzz/.google_authenticator");
                    let mut rng = crate::Rng::seeded(seed);
                    for k in 0..=MUTANTS {
                        let text = if k == 0 {
                            mutate(&base, &edits)
                        } else {
                            counts[4].fetch_add(1, Ordering::Relaxed);
                            let n = 1 + rng.below(4) as usize;
                            mutate(&base, &random_edits(&mut rng, n))
                        };
                        if let Ok(ga) = parse_google_authenticator(ga_path, &text) {
                            prop_assert!(ga.record.validate(ga_path).is_ok());
                            let again = UserRecord::from_toml(path, &ga.record.to_toml());
                            prop_assert_eq!(again.as_ref().ok(), Some(&ga.record));
                        }
                    }
                    Ok(())
                },
            );
        });
        // The system config; and module arguments on top of it.
        s.spawn(|| {
            run(
                "config",
                CONFIG_CASES,
                &counts[1],
                (
                    config_file(),
                    proptest::collection::vec(edit(), 0..4),
                    any::<u64>(),
                ),
                |(base, edits, seed)| {
                    let mut rng = crate::Rng::seeded(seed);
                    for k in 0..=MUTANTS {
                        let text = if k == 0 {
                            mutate(&base, &edits)
                        } else {
                            let n = 1 + rng.below(4) as usize;
                            mutate(&base, &random_edits(&mut rng, n))
                        };
                        if k > 0 {
                            counts[1].fetch_add(1, Ordering::Relaxed);
                        }
                        if let Ok(c) =
                            SystemConfig::from_toml(Path::new("/fuzz/config.toml"), &text)
                        {
                            prop_assert!(c.validate("again").is_ok());
                            let _ = c.networks().contains("10.1.2.3");
                            if let Some(root) = &root {
                                let _ = c.user_file_path(root);
                                let _ = c.requirement(root);
                            }
                            let same = c.with_overrides::<&str>(&[]).ok();
                            prop_assert_eq!(same.as_ref(), Some(&c));
                        }
                    }
                    Ok(())
                },
            );
            run(
                "module arguments",
                ARGS_CASES,
                &counts[2],
                (proptest::collection::vec(module_arg(), 0..6), any::<u64>()),
                |(generated, seed)| {
                    let mut rng = crate::Rng::seeded(seed);
                    for k in 0..=MUTANTS {
                        let mut raw = generated.clone();
                        if k > 0 && !raw.is_empty() {
                            counts[2].fetch_add(1, Ordering::Relaxed);
                            // One argument cut, extended or with a byte changed.
                            let i = rng.below(raw.len() as u64) as usize;
                            let a = &mut raw[i];
                            match rng.below(3) {
                                0 => a.truncate(rng.below(a.len() as u64 + 1) as usize),
                                1 => a.extend_from_slice(
                                    TOKENS[rng.below(TOKENS.len() as u64) as usize].as_bytes(),
                                ),
                                _ if !a.is_empty() => {
                                    let j = rng.below(a.len() as u64) as usize;
                                    a[j] = rng.below(256) as u8;
                                }
                                _ => {}
                            }
                        }
                        let args = Args::parse(&raw);
                        // Every argument is understood or reported, never lost.
                        let bad_utf8 = raw
                            .iter()
                            .filter(|a| std::str::from_utf8(a).is_err())
                            .count();
                        prop_assert!(args.errors.len() >= bad_utf8);
                        if let Ok(c) = SystemConfig::default().with_overrides(&args.overrides) {
                            prop_assert!(c.validate("again").is_ok());
                        }
                    }
                    Ok(())
                },
            );
            // The prompt answer, against an oracle.
            run(
                "answer",
                ANSWER_CASES,
                &counts[3],
                (
                    prop_oneof![
                        3 => proptest::collection::vec(
                            prop_oneof![8 => b'0'..=b'9', 1 => Just(b' '), 1 => Just(b'-')], 0..80),
                        1 => proptest::collection::vec(any::<u8>(), 0..80),
                    ],
                    any::<u64>(),
                ),
                |(generated, seed)| {
                    let mut rng = crate::Rng::seeded(seed);
                    for k in 0..=ANSWER_MUTANTS {
                        let raw: Vec<u8> = if k == 0 {
                            generated.clone()
                        } else {
                            counts[3].fetch_add(1, Ordering::Relaxed);
                            // Mostly digits, spaces and dashes, sometimes anything.
                            let len = rng.below(72) as usize;
                            (0..len)
                                .map(|_| match rng.below(20) {
                                    0 => b' ',
                                    1 => b'-',
                                    2 => rng.below(256) as u8,
                                    _ => b'0' + rng.below(10) as u8,
                                })
                                .collect()
                        };
                        let got = Answer::parse(&raw).map(|a| a.as_str().to_string());
                        let digits: String = raw
                            .iter()
                            .filter(|b| b.is_ascii_digit())
                            .map(|&b| char::from(b))
                            .collect();
                        let ok = raw.len() <= 64
                            && !digits.is_empty()
                            && raw
                                .iter()
                                .all(|b| b.is_ascii_digit() || *b == b' ' || *b == b'-');
                        prop_assert_eq!(got, ok.then_some(digits));
                    }
                    Ok(())
                },
            );
        });
    });
    let took = start.elapsed();
    let n: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u64 = n.iter().sum();
    assert!(total >= 1_000_000, "only {total} cases");
    figure(
        "fuzz.cases",
        format!(
            "{total} generated cases, 0 panics ({took:.1?}): user file {} (mutated structured files; what parses round-trips and survives verify at any time), system config {}, module arguments {} (Args::parse + with_overrides), prompt answers {} (against an oracle), google-authenticator files {} (what imports is a valid record that round-trips)",
            n[0], n[1], n[2], n[3], n[4]
        ),
    );
}
