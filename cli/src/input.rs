//! Reading codes and secrets: from the terminal with echo off when stdin is
//! one, otherwise one line per answer from stdin (scripts and tests pipe
//! them in).

use std::io::{BufRead, IsTerminal, Read, Write};

use otpgate_config::Answer;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Longest line read from a pipe; longer answers are wrong codes anyway.
const MAX_LINE: u64 = 4096;

/// Where answers come from, for the whole command (a pipe may carry
/// several lines: the current code, then the new one).
pub struct Input {
    tty: bool,
    stdin: std::io::StdinLock<'static>,
}

impl Input {
    pub fn new() -> Self {
        let stdin = std::io::stdin();
        Input {
            tty: stdin.is_terminal(),
            stdin: stdin.lock(),
        }
    }

    /// Reads one answer after showing `prompt` on stderr (echo off on a
    /// terminal). `Ok(None)` at end of input.
    pub fn secret_line(&mut self, prompt: &str) -> Result<Option<Zeroizing<String>>> {
        if self.tty {
            return match rpassword::prompt_password(prompt) {
                Ok(line) => Ok(Some(Zeroizing::new(line))),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                Err(e) => Err(CliError::Failed(format!("reading from the terminal: {e}"))),
            };
        }
        let mut err = std::io::stderr();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        let mut bytes = Zeroizing::new(Vec::new());
        let n = (&mut self.stdin)
            .take(MAX_LINE)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| CliError::Failed(format!("reading standard input: {e}")))?;
        let _ = writeln!(err);
        if n == 0 {
            return Ok(None);
        }
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        let text = String::from_utf8(bytes.to_vec()).unwrap_or_default();
        Ok(Some(Zeroizing::new(text)))
    }

    /// Reads one code. A line that is not a code at all (letters, too
    /// long) is `Some(None)`: a wrong code. End of input is an error.
    pub fn code(&mut self, prompt: &str) -> Result<Option<Answer>> {
        match self.secret_line(prompt)? {
            Some(line) => Ok(Answer::parse(line.trim().as_bytes())),
            None => Err(CliError::CodeRefused("no code given (end of input)".into())),
        }
    }
}
