//! The daemon's log: one line per event on standard error, which systemd
//! puts in the journal (and tests read). Never a code, a secret or a
//! request's payload.

use otpgate_config::protocol::Request;

use crate::peer::Peer;

/// A line about the daemon itself.
pub fn line(text: &str) {
    eprintln!("otpgated: {text}");
}

/// A line about a connection.
pub fn peer(peer: &Peer, text: &str) {
    line(&format!("peer uid={} pid={}: {text}", peer.uid, peer.pid));
}

/// A line about a request that was not carried out.
pub fn request(peer: &Peer, request: &Request, text: &str) {
    let user = request
        .user()
        .map(|u| format!(" user={u}"))
        .unwrap_or_default();
    line(&format!(
        "peer uid={} pid={} op={}{user}: {text}",
        peer.uid,
        peer.pid,
        request.op(),
    ));
}
