//! Reading codes, passwords and secrets: from the terminal with echo off
//! when stdin is one, otherwise one line per answer from stdin (scripts and
//! tests pipe them in).
//!
//! On a terminal, echo is switched off *before* the prompt is written, so an
//! answer typed the instant the prompt appears is never shown; the original
//! settings are restored on every return path (a guard restores them on
//! drop). Input is read straight from file descriptor 0, one byte at a
//! time, so no copy of an answer lingers in a library buffer and a pipe is
//! never read past the current line. Lines are bounded: a longer one is
//! read to its end and handed back cut to [`MAX_LINE`] bytes, which no code
//! or secret parser accepts (a wrong code, not a crash).

use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use otpgate_config::Answer;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{CliError, Result};

/// Longest answer kept; the rest of a longer line is read and dropped.
pub const MAX_LINE: usize = 1024;

/// Where answers come from, for the whole command (a pipe may carry
/// several lines: the current code, then the new one).
pub struct Input {
    tty: bool,
}

/// Puts the terminal's settings back when dropped.
struct EchoGuard<'a> {
    fd: BorrowedFd<'a>,
    original: Termios,
}

impl Drop for EchoGuard<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.original);
    }
}

/// Switches echo off on `fd` until the guard is dropped.
fn echo_off(fd: BorrowedFd<'_>) -> Result<EchoGuard<'_>> {
    let fail = |e: Errno| CliError::Terminal(e.into());
    let original = termios::tcgetattr(fd).map_err(fail)?;
    let mut quiet = original.clone();
    quiet
        .local_flags
        .remove(LocalFlags::ECHO | LocalFlags::ECHOE | LocalFlags::ECHOK);
    termios::tcsetattr(fd, SetArg::TCSANOW, &quiet).map_err(fail)?;
    Ok(EchoGuard { fd, original })
}

/// Reads one line (without its `\n`) from `fd`, byte by byte. `Ok(None)`
/// at end of input with nothing read. A line longer than [`MAX_LINE`] is
/// consumed to its end and returned cut.
fn read_line(fd: BorrowedFd<'_>) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(64));
    let mut byte = [0u8; 1];
    let mut any = false;
    loop {
        match nix::unistd::read(fd, &mut byte) {
            Ok(0) if !any => return Ok(None),
            Ok(0) => break,
            Ok(_) => {
                any = true;
                if byte[0] == b'\n' {
                    break;
                }
                if line.len() < MAX_LINE {
                    line.push(byte[0]);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => {
                byte.zeroize();
                return Err(CliError::Stdin(e.into()));
            }
        }
    }
    byte.zeroize();
    while matches!(line.last(), Some(b'\r')) {
        line.pop();
    }
    Ok(Some(line))
}

impl Input {
    pub fn new() -> Self {
        Input {
            tty: std::io::stdin().is_terminal(),
        }
    }

    /// Reads one answer after showing `prompt` on stderr (echo off on a
    /// terminal). `Ok(None)` at end of input.
    pub fn secret_line(&mut self, prompt: &str) -> Result<Option<Zeroizing<String>>> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let mut err = std::io::stderr();
        let guard = if self.tty { Some(echo_off(fd)?) } else { None };
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        let line = read_line(fd);
        drop(guard);
        // The Enter the user typed was not echoed (nor is a pipe's newline).
        let _ = writeln!(err);
        let Some(bytes) = line? else {
            return Ok(None);
        };
        // Not UTF-8: no code or secret either; an empty answer is wrong.
        let text = std::str::from_utf8(&bytes).unwrap_or_default();
        Ok(Some(Zeroizing::new(text.to_string())))
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
