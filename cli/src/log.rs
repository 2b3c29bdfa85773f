//! One syslog line per command that reads or changes an enrollment
//! (facility authpriv, ident `otpgate`): who acted on whom, what, and the
//! outcome. Never a code, a secret or a backup code.
//!
//! Written as a datagram to `/dev/log` by hand: no global `openlog` state,
//! no fallback to the console; without a syslog daemon the line is dropped.

use std::os::unix::net::UnixDatagram;

use otpgate_config::logline::field;

use crate::error::Result;

const SOCKET: &str = "/dev/log";
/// `LOG_AUTHPRIV`.
const FACILITY: u16 = 10;
/// `LOG_NOTICE` for changes and refusals, `LOG_INFO` for reads.
const NOTICE: u16 = 5;
const INFO: u16 = 6;

/// The line for one command (without the syslog header), in the module's
/// form and words: `action=reset user=alice by_uid=0 outcome=success
/// reason=-`; a refusal is `outcome=deny`, any other failure
/// `outcome=error`, with the message as the reason.
pub fn format_line(action: &str, user: &str, by_uid: u32, result: &Result<()>) -> String {
    let (outcome, reason) = match result {
        Ok(()) => ("success", None),
        Err(e) if e.is_refusal() => ("deny", Some(e.to_string())),
        Err(e) => ("error", Some(e.to_string())),
    };
    let mut line = String::new();
    field(&mut line, "action", Some(action));
    field(&mut line, "user", Some(user));
    field(&mut line, "by_uid", Some(&by_uid.to_string()));
    field(&mut line, "outcome", Some(outcome));
    field(&mut line, "reason", reason.as_deref());
    line
}

/// Sends the line; any failure drops it.
pub fn send(changed_or_refused: bool, line: &str) {
    let severity = if changed_or_refused { NOTICE } else { INFO };
    let datagram = format!(
        "<{}>otpgate[{}]: {line}",
        FACILITY * 8 + severity,
        std::process::id()
    );
    if let Ok(socket) = UnixDatagram::unbound() {
        let _ = socket.set_nonblocking(true);
        let _ = socket.send_to(datagram.as_bytes(), SOCKET);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CliError;

    #[test]
    fn lines_name_the_action_user_and_outcome_as_the_module_writes_them() {
        assert_eq!(
            format_line("reset", "alice", 0, &Ok(())),
            "action=reset user=alice by_uid=0 outcome=success reason=-"
        );
        let refused = Err(CliError::CodeRefused("wrong code".into()));
        assert_eq!(
            format_line("verify", "alice", 1000, &refused),
            "action=verify user=alice by_uid=1000 outcome=deny reason=\"wrong code\""
        );
        let line = format_line("verify", "bob\nforged=1", 1000, &Ok(()));
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("user=\"bob\\x0aforged=1\""), "{line}");
    }
}
