//! One log line's fields, for the module and the CLI alike: `key=value`,
//! the value made safe so a hostile user name or host cannot forge a field
//! or a line (docs/ARCHITECTURE.md, "Logging without secrets").
#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// Longest value written for one field; longer ones are cut.
const MAX_FIELD: usize = 128;
/// Longest `reason`: ours, not a caller's, and a config error's file,
/// line and advice ("... stands inside `[channels]` (line 80); move it
/// above the first table") must reach the admin whole.
const MAX_REASON: usize = 400;

/// `key=value` with the value made safe for one log line: control
/// characters, quotes, backslashes and non-ASCII escaped, spaces quoted,
/// long values cut. An absent value is `-`.
pub fn field(out: &mut String, key: &str, value: Option<&str>) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(key);
    out.push('=');
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        out.push('-');
        return;
    };
    let quoted = value.contains([' ', '=']);
    if quoted {
        out.push('"');
    }
    let limit = if key == "reason" {
        MAX_REASON
    } else {
        MAX_FIELD
    };
    for (i, c) in value.chars().enumerate() {
        if i == limit {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
    }
    if quoted {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped_and_cut() {
        let mut s = String::new();
        field(&mut s, "user", Some("alice"));
        field(&mut s, "rhost", None);
        field(&mut s, "reason", Some("code \"accepted\""));
        field(&mut s, "service", Some("a\nb\x1b\u{e9}"));
        assert_eq!(
            s,
            r#"user=alice rhost=- reason="code \"accepted\"" service=a\x0ab\x1b\xc3\xa9"#
        );
        let mut long = String::new();
        field(&mut long, "user", Some(&"x".repeat(1000)));
        assert!(long.len() < 140 && long.ends_with("..."));
        let mut reason = String::new();
        field(&mut reason, "reason", Some(&"y".repeat(300)));
        assert_eq!(reason.len(), "reason=".len() + 300);
        field(&mut reason, "reason", Some(&"y".repeat(1000)));
        assert!(reason.len() < 750 && reason.ends_with("..."));
    }
}
