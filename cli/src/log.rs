//! One syslog line per command that reads or changes an enrollment
//! (facility authpriv, ident `otpgate`): who acted on whom, what, and the
//! outcome. Never a code, a secret or a backup code.
//!
//! Written as a datagram to `/dev/log` by hand: no global `openlog` state,
//! no fallback to the console; without a syslog daemon the line is dropped.

use std::os::unix::net::UnixDatagram;

const SOCKET: &str = "/dev/log";
/// `LOG_AUTHPRIV`.
const FACILITY: u16 = 10;
/// `LOG_NOTICE` for changes and refusals, `LOG_INFO` for reads.
const NOTICE: u16 = 5;
const INFO: u16 = 6;

/// The line for one command (without the syslog header).
pub fn format_line(action: &str, user: &str, by_uid: u32, outcome: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .take(200)
            .map(|c| if c.is_control() || c == '"' { '?' } else { c })
            .collect()
    };
    format!(
        "action={} user={} by_uid={by_uid} outcome=\"{}\"",
        clean(action),
        clean(user),
        clean(outcome)
    )
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

    #[test]
    fn lines_name_the_action_user_and_outcome_without_control_characters() {
        assert_eq!(
            format_line("reset", "alice", 0, "ok"),
            "action=reset user=alice by_uid=0 outcome=\"ok\""
        );
        let line = format_line("verify", "bob\nforged=1", 1000, "say \"hi\"");
        assert!(
            !line.contains('\n') && line.matches('"').count() == 2,
            "{line}"
        );
    }
}
