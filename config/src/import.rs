//! Reading other tools' enrollment files. `google-authenticator`'s
//! `~/.google_authenticator`: the base32 secret on the first line, then
//! option lines starting with `" ` (`TOTP_AUTH`, `HOTP_COUNTER n`,
//! `WINDOW_SIZE n`, `STEP_SIZE n`, `RATE_LIMIT n m [times...]`,
//! `DISALLOW_REUSE [steps...]`, and the hardened fork's `DIGITS`/
//! `ALGORITHM`), then one scratch code per line.
//!
//! Parsing only: reading the file safely is the caller's job.

use std::path::Path;

use crate::backup;
use crate::error::{Error, Result};
use crate::otp::{Algorithm, Secret};
use crate::record::UserRecord;

/// What a google-authenticator file holds, as otpgate will use it.
pub struct GaFile {
    pub record: UserRecord,
    /// Settings otpgate does not carry over, in words for the user.
    pub notes: Vec<String>,
}

/// A parse error at `line` of `path`.
fn bad(path: &Path, line: usize, message: &str) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line,
        column: 0,
        message: message.to_string(),
    }
}

/// The option lines of a google-authenticator file.
struct GaOptions {
    hotp_counter: Option<u64>,
    window_size: Option<u32>,
    step: u64,
    digits: u8,
    algorithm: Algorithm,
    /// The latest time step of `DISALLOW_REUSE`.
    last_step: u64,
}

impl Default for GaOptions {
    fn default() -> Self {
        GaOptions {
            hotp_counter: None,
            window_size: None,
            step: 30,
            digits: 6,
            algorithm: Algorithm::SHA1,
            last_step: 0,
        }
    }
}

impl GaOptions {
    /// Reads option line `n` (the text after `" `); options otpgate does
    /// not carry over add a note.
    fn read(&mut self, path: &Path, n: usize, option: &str, notes: &mut Vec<String>) -> Result<()> {
        let bad = |message: &str| bad(path, n, message);
        let number = |word: Option<&str>, what: &str| -> Result<u64> {
            word.and_then(|w| w.parse().ok())
                .ok_or_else(|| bad(&format!("{what} needs a number")))
        };
        let mut words = option.split_whitespace();
        match words.next().unwrap_or("") {
            "TOTP_AUTH" => {}
            "HOTP_COUNTER" => self.hotp_counter = Some(number(words.next(), "HOTP_COUNTER")?),
            "WINDOW_SIZE" => {
                let w = number(words.next(), "WINDOW_SIZE")?;
                self.window_size = Some(u32::try_from(w).unwrap_or(u32::MAX));
            }
            "STEP_SIZE" => self.step = number(words.next(), "STEP_SIZE")?,
            "DIGITS" | "HMAC_DIGITS" => {
                let d = number(words.next(), "DIGITS")?;
                self.digits = u8::try_from(d).map_err(|_| bad("DIGITS is out of range"))?;
            }
            "ALGORITHM" | "HMAC_ALGORITHM" => {
                let name = words.next().unwrap_or("");
                self.algorithm = name.parse().map_err(|e: Error| bad(&e.to_string()))?;
            }
            "DISALLOW_REUSE" => {
                // The time steps already used; keep the latest.
                self.last_step = words
                    .filter_map(|w| w.parse::<u64>().ok())
                    .fold(self.last_step, u64::max);
            }
            "RATE_LIMIT" => notes.push(
                "RATE_LIMIT is not carried over: otpgate locks an account after \
                 `lockout_after` wrong codes (system config) instead"
                    .into(),
            ),
            other => notes.push(format!("option `{other}` is not known and was ignored")),
        }
        Ok(())
    }

    /// The record these options describe for `secret`.
    fn record(self, secret: Secret, notes: &mut Vec<String>) -> UserRecord {
        let GaOptions {
            hotp_counter,
            window_size,
            step,
            digits,
            algorithm,
            last_step,
        } = self;
        if let Some(counter) = hotp_counter {
            let mut r = UserRecord::new_hotp(secret, algorithm, digits, counter);
            if let (Some(h), Some(w)) = (r.devices[0].hotp.as_mut(), window_size) {
                // google-authenticator checks `w` counters from the current one.
                h.lookahead = Some(w.saturating_sub(1).min(1000));
            }
            return r;
        }
        let mut r = UserRecord::new_totp(secret, algorithm, digits, step);
        if let (Some(t), Some(w)) = (r.devices[0].totp.as_mut(), window_size) {
            // `w` codes valid at once: (w - 1) / 2 either side.
            let either_side = w.saturating_sub(1) / 2;
            if either_side > 10 {
                notes.push(format!(
                    "WINDOW_SIZE {w} is wider than otpgate allows; using 10 steps either side"
                ));
            }
            t.window = Some(either_side.min(10));
        }
        r.devices[0].last_step = last_step;
        r
    }
}

/// Parses the text of a google-authenticator file. `path` is for messages.
pub fn parse_google_authenticator(path: &Path, text: &str) -> Result<GaFile> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end()));
    let (_, first) = lines.next().ok_or_else(|| bad(path, 1, "empty file"))?;
    let secret = Secret::from_base32(first).map_err(|e| bad(path, 1, &e.to_string()))?;
    let mut options = GaOptions::default();
    let mut codes = Vec::new();
    let mut notes = Vec::new();
    for (n, line) in lines {
        if let Some(option) = line.strip_prefix("\" ") {
            options.read(path, n, option, &mut notes)?;
        } else if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
            if !(6..=16).contains(&line.len()) {
                return Err(bad(path, n, "a scratch code must have 6 to 16 digits"));
            }
            codes.push(backup::hash(line)?);
        } else if !line.is_empty() {
            return Err(bad(
                path,
                n,
                "neither an option (`\" NAME`) nor a scratch code",
            ));
        }
    }
    let mut record = options.record(secret, &mut notes);
    record.backup.codes = codes;
    record.validate(path)?;
    Ok(GaFile { record, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Answer;

    fn parse(text: &str) -> Result<GaFile> {
        parse_google_authenticator(Path::new("ga"), text)
    }

    #[test]
    fn a_totp_file_with_every_option() {
        let ga = parse(
            "KPQ7TO3JWH6VH5I4QTWW7A473U\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 17\n\
             \" DISALLOW_REUSE 56666666 56666667\n\" STEP_SIZE 60\n\" TOTP_AUTH\n93358213\n15457930\n",
        )
        .unwrap();
        let t = ga.record.totp().unwrap();
        assert_eq!((t.period, t.window, t.digits), (60, Some(8), 6));
        assert_eq!(ga.record.devices[0].last_step, 56666667);
        assert_eq!(ga.record.backup.codes.len(), 2);
        assert!(ga.notes.iter().any(|n| n.contains("RATE_LIMIT")));
        let mut r = ga.record.clone();
        let verdict = r
            .verify(
                &Answer::parse(b"15457930").unwrap(),
                0,
                crate::record::VerifyPolicy {
                    totp_window: 1,
                    hotp_lookahead: 10,
                },
            )
            .unwrap();
        assert_eq!(verdict, crate::Verdict::Accepted(crate::Method::Backup));
    }

    #[test]
    fn a_hotp_file_keeps_its_counter_and_window() {
        let ga =
            parse("LQTBRUNQHZMGOOGPAGRJ3ZAVG4\n\" WINDOW_SIZE 5\n\" HOTP_COUNTER 7\n11510710\n")
                .unwrap();
        let h = ga.record.hotp().unwrap();
        assert_eq!((h.counter, h.lookahead), (7, Some(4)));
        assert!(ga.record.totp().is_none());
    }

    #[test]
    fn hardened_fork_digits_and_algorithm_are_read() {
        let ga =
            parse("KPQ7TO3JWH6VH5I4QTWW7A473U\n\" TOTP_AUTH\n\" DIGITS 8\n\" ALGORITHM SHA256\n")
                .unwrap();
        let t = ga.record.totp().unwrap();
        assert_eq!((t.digits, t.algorithm), (8, Algorithm::SHA256));
    }

    #[test]
    fn garbage_is_refused_with_the_line() {
        for (text, line) in [
            ("", "ga:1"),
            ("not base32!\n", "ga:1"),
            ("KPQ7TO3JWH6VH5I4QTWW7A473U\nhello\n", "ga:2"),
            ("KPQ7TO3JWH6VH5I4QTWW7A473U\n\" HOTP_COUNTER x\n", "ga:2"),
            ("KPQ7TO3JWH6VH5I4QTWW7A473U\n123\n", "ga:2"),
            ("KPQ7TO3JWH6VH5I4QTWW7A473U\n\" DIGITS 12\n", "ga"),
        ] {
            let err = match parse(text) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted {text:?}"),
            };
            assert!(err.contains(line), "{text:?}: {err}");
        }
    }
}
