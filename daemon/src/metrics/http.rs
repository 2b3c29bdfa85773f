//! The metrics endpoint: `GET /metrics` over plain HTTP/1.0, on a thread of
//! its own with std's `TcpListener`. Not a web framework or an async
//! runtime: the daemon's dependencies are what an auditor reads, and a
//! scrape every few seconds needs one request per connection, one
//! connection at a time.
//!
//! A client gets [`IO_TIME`] and [`MAX_HEAD`] bytes to send its request
//! (one deadline, so a byte a second does not stretch it), then one answer,
//! and the connection is closed. A silent or garbled client costs the next
//! scrape that wait at most, and the logins nothing: they are served on the
//! Unix socket by other threads. Nothing is logged per request, so a
//! scanner cannot fill the journal.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use otpgate_config::system::DaemonConfig;

use crate::error::Error;
use crate::log;

/// Bytes a client may send before its request is whole: a scraper's
/// request line and headers take a few hundred.
const MAX_HEAD: usize = 4096;
/// Time a client has to send its request, and to take the answer.
const IO_TIME: Duration = Duration::from_secs(2);
/// The text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `daemon.metrics`, if set. At start, so that a port in use stops
/// the daemon instead of leaving it without metrics unnoticed.
pub fn bind(config: &DaemonConfig) -> Result<Option<TcpListener>, Error> {
    let Some(addr) = config.metrics_address() else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).map_err(|cause| Error::Metrics { addr, cause })?;
    log::line(&announcement(addr));
    Ok(Some(listener))
}

/// The start-up line; a warning when anyone on the network may read it.
fn announcement(addr: SocketAddr) -> String {
    let line = format!("metrics on http://{addr}/metrics");
    if addr.ip().is_loopback() {
        line
    } else {
        format!("{line} (not a loopback address: it has no authentication)")
    }
}

/// Serves scrapes on `listener` from a thread of its own; `page` makes
/// the page at each scrape.
pub fn spawn(listener: TcpListener, page: impl Fn() -> String + Send + 'static) {
    let serve = move || {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    // A bug that panics ends one scrape, not the endpoint.
                    if catch_unwind(AssertUnwindSafe(|| scrape(stream, &page))).is_err() {
                        log::line("a metrics scrape panicked; its connection was closed");
                    }
                }
                Err(e) => {
                    // Out of descriptors: wait rather than spin.
                    log::line(&format!("metrics: accept: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    let started = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(serve);
    if let Err(e) = started {
        log::line(&format!("cannot start the metrics thread: {e}"));
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Metrics,
    Other,
}

/// One request on `stream` answered; the connection is then closed.
fn scrape(mut stream: TcpStream, page: impl FnOnce() -> String) {
    let response = match read_head(&mut stream).as_deref().map(asked) {
        Some(Asked::Metrics) => response("200 OK", CONTENT_TYPE, &page()),
        Some(Asked::Other) => response("404 Not Found", "text/plain", "only /metrics\n"),
        None => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    // Best effort: a client that does not read gets nothing after IO_TIME.
    let _ = stream.set_write_timeout(Some(IO_TIME));
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// The request line and headers, up to the blank line that ends them (or
/// the end of the stream); `None` when they do not come within
/// [`IO_TIME`] and [`MAX_HEAD`] bytes, or hold no whole line.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let deadline = Instant::now() + IO_TIME;
    let mut head = Vec::new();
    let mut chunk = [0u8; 512];
    let most = chunk.len();
    while !ends_head(&head) {
        let left = deadline.saturating_duration_since(Instant::now());
        let room = MAX_HEAD - head.len();
        if left.is_zero() || room == 0 {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(&mut chunk[..room.min(most)]) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(head).filter(|h| h.contains(&b'\n'))
}

fn ends_head(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// `GET /metrics` (a query string ignored), or anything else.
fn asked(head: &[u8]) -> Asked {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let method = words.next();
    let path = words.next().and_then(|t| t.split(|b| *b == b'?').next());
    if method == Some(b"GET") && path == Some(b"/metrics") {
        Asked::Metrics
    } else {
        Asked::Other
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_the_page() {
        for head in [
            &b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /metrics?name[]=x HTTP/1.0\n\n",
            b"GET  /metrics\n",
        ] {
            assert_eq!(asked(head), Asked::Metrics, "{head:?}");
        }
        for head in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"POST /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics/x HTTP/1.1\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"\x00\xff\xfe\n\n",
            b"\n",
        ] {
            assert_eq!(asked(head), Asked::Other, "{head:?}");
        }
    }

    /// Sends `request` to a running endpoint (closing its side when
    /// `close`) and reads the whole answer.
    fn ask(addr: SocketAddr, request: &[u8], close: bool) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        if close {
            s.shutdown(Shutdown::Write).unwrap();
        }
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn the_endpoint_answers_a_scrape_a_stray_path_and_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(listener, || "up 1\n".to_string());
        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false);
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(ok.contains("\r\nContent-Length: 5\r\n") && ok.ends_with("\r\n\r\nup 1\n"));
        let other = ask(addr, b"GET /secrets HTTP/1.1\r\n\r\n", false);
        assert!(other.starts_with("HTTP/1.0 404 Not Found\r\n"), "{other}");
        assert!(!other.contains("up 1"));
        let garbage = ask(addr, &[0xff; 100], true);
        assert!(
            garbage.starts_with("HTTP/1.0 400 Bad Request\r\n"),
            "{garbage}"
        );
        // Past the size limit the answer comes before the client is done.
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&[b'a'; 2 * MAX_HEAD]);
        let mut big = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.read_to_string(&mut big);
        assert!(big.is_empty() || big.starts_with("HTTP/1.0 400"), "{big}");
        assert!(ask(addr, b"GET /metrics\n\n", false).ends_with("up 1\n"));
    }
}
