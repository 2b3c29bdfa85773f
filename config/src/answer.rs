//! What the user typed at the prompt, reduced to the digits that count.

use zeroize::Zeroizing;

/// Longest answer that can be a code at all; anything longer is a wrong
/// code (never an error), whatever it holds.
pub const MAX_ANSWER_BYTES: usize = 64;

/// A normalized answer: ASCII digits only, 1 to 64 of them. Wiped on drop.
pub struct Answer(Zeroizing<String>);

impl Answer {
    /// Normalizes raw prompt bytes. Spaces and `-` are dropped (people type
    /// `123 456` or `1234-5678`); anything else that is not a digit, an
    /// empty answer, or more than 64 bytes yields `None`: a wrong code.
    pub fn parse(raw: &[u8]) -> Option<Answer> {
        if raw.len() > MAX_ANSWER_BYTES {
            return None;
        }
        let mut digits = Zeroizing::new(String::with_capacity(raw.len()));
        for &b in raw {
            match b {
                b'0'..=b'9' => digits.push(char::from(b)),
                b' ' | b'-' => {}
                _ => return None,
            }
        }
        (!digits.is_empty()).then_some(Answer(digits))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Answer([{} digits redacted])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_and_dashes_are_dropped() {
        assert_eq!(Answer::parse(b"123 456").unwrap().as_str(), "123456");
        assert_eq!(Answer::parse(b"1234-5678").unwrap().as_str(), "12345678");
        assert_eq!(Answer::parse(b" 42 ").unwrap().as_str(), "42");
    }

    #[test]
    fn anything_else_is_a_wrong_code() {
        for bad in [
            &b""[..],
            b"   ",
            b"12345a",
            b"123\x00456",
            b"\xff\xfe",
            b"123456\n",
            b"+123456",
        ] {
            assert!(Answer::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn long_answers_are_refused_without_scanning_them() {
        assert!(Answer::parse(&[b'1'; 64]).is_some());
        assert!(Answer::parse(&[b'1'; 65]).is_none());
        assert!(Answer::parse(&vec![b'1'; 1 << 20]).is_none());
    }

    #[test]
    fn debug_does_not_show_the_code() {
        let a = Answer::parse(b"987654").unwrap();
        assert!(!format!("{a:?}").contains("987654"));
    }
}
