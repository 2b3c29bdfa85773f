//! `otpgate import oath FILE`: one user's line of a pam_oath / oath-toolkit
//! usersfile (`/etc/users.oath`):
//!
//! ```text
//! TYPE  USER  PASSWORD  HEX-SECRET  [COUNTER  [LAST-OTP  [TIME]]]
//! HOTP/T30/6  alice  -  3132333435363738393031323334353637383930  0  755224  2024-01-02T03:04:05L
//! ```
//!
//! TYPE is `HOTP`, `HOTP/E[/6|7|8]` (counter-based) or `HOTP/T30[/6|7|8]`,
//! `HOTP/T60[/...]` (time-based, 30 or 60 s). liboath (`usersfile.c`)
//! checks a HOTP code from COUNTER on and, after a success, writes back the
//! counter of the code just used, that code as LAST-OTP and the local time
//! as TIME (`%Y-%m-%dT%H:%M:%SL`). So COUNTER is the *last used* counter
//! when LAST-OTP is there (the next code is COUNTER + 1), and the first
//! usable one when it is not (a fresh line). For TOTP, LAST-OTP and TIME
//! are the replay guard: the step of LAST-OTP near TIME becomes otpgate's
//! `last_step`, so that code and every earlier one stay refused.

use std::path::Path;

use otpgate_config::UserRecord;
use otpgate_config::error::Origin;
use otpgate_config::otp::{self, Algorithm, Generator, Secret};
use zeroize::Zeroizing;

use crate::cli::OathArgs;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::import::{ImportJson, import_rules, read_file_as, store};
use crate::output;

/// How far from TIME the step of LAST-OTP is looked for: liboath's window
/// is a pam_oath argument (`window=`), rarely above a few steps.
const LAST_OTP_SEARCH_STEPS: u64 = 20;

/// One parsed line.
pub struct OathLine {
    pub record: UserRecord,
    pub line: usize,
    pub notes: Vec<String>,
}

/// Digits and period (`None` for HOTP) of a token type.
fn parse_type(word: &str) -> Option<(u8, Option<u64>)> {
    let mut parts = word.split('/');
    if parts.next()? != "HOTP" {
        return None;
    }
    let (period, digits) = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => (None, None),
        (Some("E"), d, None) => (None, d),
        (Some("T30"), d, None) => (Some(30), d),
        (Some("T60"), d, None) => (Some(60), d),
        _ => return None,
    };
    let digits = match digits {
        None | Some("6") => 6,
        Some("7") => 7,
        Some("8") => 8,
        Some(_) => return None,
    };
    Some((digits, period))
}

fn hex_decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 2));
    for pair in text.as_bytes().chunks(2) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    Some(out)
}

/// liboath's TIME: local time, `2024-01-02T03:04:05L`, in the time zone
/// of this machine (TZ or /etc/localtime), as liboath's `mktime` reads it.
fn parse_local_time(text: &str) -> Option<u64> {
    let civil: jiff::civil::DateTime = text.strip_suffix('L')?.parse().ok()?;
    let zoned = civil.to_zoned(jiff::tz::TimeZone::system()).ok()?;
    u64::try_from(zoned.timestamp().as_second()).ok()
}

/// `path:line: message`, for a line of the usersfile.
fn bad_line(path: &Path, line: usize, message: &str) -> CliError {
    CliError::BadImport {
        file: Origin::at(path.display().to_string(), line),
        message: message.to_string(),
    }
}

/// The first line of `user` with a known token type (1-based number and
/// words), and the numbers of the user's other such lines.
fn find_user_line<'a>(text: &'a str, user: &str) -> (Option<(usize, Vec<&'a str>)>, Vec<String>) {
    let mut found: Option<(usize, Vec<&str>)> = None;
    let mut others = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // liboath skips lines whose type it does not know (comments too).
        if words.len() < 2 || words[0].starts_with('#') || words[1] != user {
            continue;
        }
        if parse_type(words[0]).is_none() {
            continue;
        }
        if found.is_none() {
            found = Some((i + 1, words));
        } else {
            others.push((i + 1).to_string());
        }
    }
    (found, others)
}

/// The fields of one usersfile line.
struct OathFields<'a> {
    digits: u8,
    /// `None` for HOTP.
    period: Option<u64>,
    secret: Secret,
    counter: u64,
    last_otp: Option<&'a str>,
    time: Option<u64>,
}

/// Reads the fields of line `n` (its `words`); the password field only
/// adds a note.
fn parse_fields<'a>(
    path: &Path,
    n: usize,
    words: &[&'a str],
    notes: &mut Vec<String>,
) -> Result<OathFields<'a>> {
    let bad = |message: &str| bad_line(path, n, message);
    let (digits, period) = parse_type(words[0]).ok_or_else(|| bad("unknown token type"))?;
    match words.get(2) {
        None => return Err(bad("no password field (`-` for none)")),
        Some(&"-") | Some(&"+") => {}
        Some(_) => notes.push(
            "the line's static password is not carried over: otpgate leaves passwords to \
             the rest of the PAM stack"
                .into(),
        ),
    }
    let hex = words.get(3).ok_or_else(|| bad("no secret"))?;
    let bytes = hex_decode(hex).ok_or_else(|| bad("the secret is not hexadecimal"))?;
    let secret = Secret::from_bytes(bytes.to_vec()).map_err(|e| bad(&e.to_string()))?;
    let counter: u64 = match words.get(4) {
        None => 0,
        Some(w) => w.parse().map_err(|_| bad("the counter is not a number"))?,
    };
    let last_otp = words.get(5).copied().filter(|w| !w.is_empty());
    if let Some(otp) = last_otp
        && (otp.len() != usize::from(digits) || !otp.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("the last OTP field is not a code"));
    }
    let time = match words.get(6) {
        None => None,
        Some(w) => Some(
            parse_local_time(w)
                .ok_or_else(|| bad("the time field is not like 2024-01-02T03:04:05L"))?,
        ),
    };
    Ok(OathFields {
        digits,
        period,
        secret,
        counter,
        last_otp,
        time,
    })
}

/// The record the fields describe.
fn record_of(fields: OathFields<'_>, now: u64, notes: &mut Vec<String>) -> Result<UserRecord> {
    let Some(period) = fields.period else {
        // The counter was used when a last OTP is recorded.
        let next = if fields.last_otp.is_some() {
            fields.counter.saturating_add(1)
        } else {
            fields.counter
        };
        return Ok(UserRecord::new_hotp(
            fields.secret,
            Algorithm::SHA1,
            fields.digits,
            next,
        ));
    };
    let OathFields {
        digits,
        secret,
        last_otp,
        time,
        ..
    } = fields;
    let mut record = UserRecord::new_totp(secret.clone(), Algorithm::SHA1, digits, period);
    if let Some(otp) = last_otp {
        let around = otp::time_step(time.unwrap_or(now), period);
        let generator = Generator::totp(&secret, Algorithm::SHA1, digits, period)?;
        let steps = generator.matching_steps(
            otp,
            around.saturating_sub(LAST_OTP_SEARCH_STEPS),
            around.saturating_add(LAST_OTP_SEARCH_STEPS),
        );
        match steps.into_iter().max() {
            Some(step) => record.devices[0].last_step = step,
            None => {
                // Unknown step: refuse everything up to now.
                record.devices[0].last_step = otp::time_step(now, period);
                notes.push(
                    "the last OTP does not match the secret near its time; codes up \
                     to now are treated as used"
                        .into(),
                );
            }
        }
    }
    Ok(record)
}

/// Finds `user`'s line in usersfile `text` and turns it into a record.
/// `now` stands in for a missing TIME. Messages name the file and line,
/// never a secret.
pub fn parse_oath(path: &Path, text: &str, user: &str, now: u64) -> Result<OathLine> {
    let (found, others) = find_user_line(text, user);
    let Some((n, words)) = found else {
        return Err(CliError::UserNotInFile {
            path: path.to_path_buf(),
            user: user.to_string(),
        });
    };
    let mut notes = Vec::new();
    if !others.is_empty() {
        notes.push(format!(
            "{user} has more tokens (lines {}); only line {n} was imported",
            others.join(", ")
        ));
    }
    let fields = parse_fields(path, n, &words, &mut notes)?;
    let record = record_of(fields, now, &mut notes)?;
    record.validate(path)?;
    Ok(OathLine {
        record,
        line: n,
        notes,
    })
}

pub fn oath(ctx: &mut Context, args: &OathArgs) -> Result<()> {
    if args.force {
        ctx.require_root("--force")?;
    }
    // A usersfile is normally root's (0600): root reads it as root; a user
    // reads only a file they can read themselves. pam_oath does not check
    // its mode, so only write access by group or others is refused: then
    // someone else may have chosen the secret.
    let identity = (!ctx.is_root).then(|| otpgate_config::identity::FsIdentity::of(&ctx.account));
    let rules = import_rules(ctx, 0o022);
    let text = read_file_as(&args.file, identity.as_ref(), &rules)?;
    let user = ctx.account.name.clone();
    let OathLine {
        record,
        line,
        notes,
    } = parse_oath(&args.file, &text, &user, ctx.now)?;
    let (method, left) = store(ctx, args.force, &args.device, record)?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    if ctx.json {
        return output::print_json(&ImportJson {
            user: &user,
            file: ctx.describe(),
            method,
            device: &args.device,
            backup_codes_left: left,
            notes: &notes,
        });
    }
    println!(
        "Imported line {line} of {} for {user} (device {}, {}); saved to {}.",
        args.file.display(),
        args.device,
        method.to_uppercase(),
        ctx.describe()
    );
    println!(
        "The token keeps working. There are no backup codes yet: run `otpgate backup-codes`. \
         Once pam.d uses pam_otpgate.so instead of pam_oath.so, remove the line from {}.",
        args.file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4226's test secret ("12345678901234567890").
    const HEX: &str = "3132333435363738393031323334353637383930";

    fn parse(text: &str, user: &str) -> Result<OathLine> {
        parse_oath(Path::new("users.oath"), text, user, 1_700_000_000)
    }

    #[test]
    fn token_types_give_digits_and_period() {
        assert_eq!(parse_type("HOTP"), Some((6, None)));
        assert_eq!(parse_type("HOTP/E"), Some((6, None)));
        assert_eq!(parse_type("HOTP/E/8"), Some((8, None)));
        assert_eq!(parse_type("HOTP/T30"), Some((6, Some(30))));
        assert_eq!(parse_type("HOTP/T30/8"), Some((8, Some(30))));
        assert_eq!(parse_type("HOTP/T60/7"), Some((7, Some(60))));
        for bad in ["TOTP", "HOTP/T45", "HOTP/E/9", "HOTP/T30/6/x", "hotp"] {
            assert_eq!(parse_type(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_fresh_hotp_line_starts_at_its_counter_and_a_used_one_after_it() {
        let fresh = parse(&format!("HOTP alice - {HEX} 5\n"), "alice").unwrap();
        assert_eq!(fresh.record.hotp().unwrap().counter, 5);
        let used = parse(
            &format!("HOTP/E\talice\t-\t{HEX}\t5\t254676\t2024-01-02T03:04:05L\n"),
            "alice",
        )
        .unwrap();
        assert_eq!(used.record.hotp().unwrap().counter, 6);
        let none = parse(&format!("HOTP alice - {HEX}\n"), "alice").unwrap();
        assert_eq!(none.record.hotp().unwrap().counter, 0);
    }

    #[test]
    fn the_right_users_line_is_taken_and_others_noted() {
        let text = format!(
            "# comment\nHOTP/T30 bob - {HEX}\nHOTP/T30/8 alice + {HEX}\nHOTP alice - {HEX}\n"
        );
        let a = parse(&text, "alice").unwrap();
        assert_eq!(a.line, 3);
        assert_eq!(a.record.totp().unwrap().digits, 8);
        assert!(
            a.notes.iter().any(|n| n.contains("lines 4")),
            "{:?}",
            a.notes
        );
        assert!(parse(&text, "carol").is_err());
    }

    #[test]
    fn garbage_is_refused_with_the_line_and_without_the_secret() {
        for (text, want) in [
            ("HOTP alice - 31323g\n", "not hexadecimal"),
            ("HOTP alice - 3132\n", "bits"),
            ("HOTP alice\n", "no password field"),
            (&format!("HOTP alice - {HEX} x\n"), "counter"),
            (&format!("HOTP alice - {HEX} 1 12345\n"), "last OTP"),
            (
                &format!("HOTP/T30 alice - {HEX} 0 123456 yesterday\n"),
                "time field",
            ),
        ] {
            let err = match parse(text, "alice") {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted {text:?}"),
            };
            assert!(
                err.contains("users.oath:1") && err.contains(want),
                "{text:?}: {err}"
            );
            assert!(!err.contains(HEX), "{err}");
        }
    }
}
