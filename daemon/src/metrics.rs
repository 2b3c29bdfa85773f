//! `daemon.metrics`: what the daemon did, counted for Prometheus (off
//! unless configured; docs/ARCHITECTURE.md, §3.1).
//!
//! The counters are atomics, bumped where a request has been answered
//! (`server.rs`); a scrape reads them with the gauges of the moment
//! (connections, worker threads, idle database connections) and renders
//! the text exposition format 0.0.4. The endpoint itself is `http.rs`.
//!
//! Nothing here names a user, a peer, a code or a destination: only
//! outcomes, methods, operations and times, so the page may be read by
//! whoever can reach it (it has no authentication).
//!
//! A check is counted, not a login: a login may check several answers (up
//! to `max_attempts`), `otpgate verify` checks one without a login, and a
//! login that skips the code (a remembered host, a trusted network) checks
//! none. The daemon knows only what it was asked.

mod http;

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use otpgate_config::Method;
use otpgate_config::protocol::{Reply, Request};
use otpgate_config::verification::{Checked, Refusal};

use crate::error::Error;

pub use http::{bind, spawn};

/// The counters since the daemon started.
#[derive(Default)]
pub struct Metrics {
    /// Checks by [`Outcome`] and by method (indexes of [`METHODS`]).
    checks: [[AtomicU64; METHODS.len()]; Outcome::ALL.len()],
    /// Wrong answers that locked the account.
    lockouts: AtomicU64,
    check_time: Histogram,
    /// Requests by operation. A map rather than atomics: the operations
    /// are the protocol's, and a new one is counted without a change here.
    requests: Mutex<BTreeMap<&'static str, u64>>,
    store_errors: AtomicU64,
    /// Connections closed without an answer, by [`Dropped`].
    dropped: [AtomicU64; Dropped::ALL.len()],
}

/// What a scrape reads of the moment, besides the counters.
pub struct Gauges {
    /// Connections being served.
    pub connections: usize,
    /// Worker threads alive, busy or idle.
    pub workers: usize,
    /// Idle connections to the database (`backend = "postgres"` only).
    pub db_idle: Option<usize>,
}

/// How a check ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Wrong,
    Replayed,
    Expired,
    /// Locked already: the answer was not looked at.
    Locked,
    NotEnrolled,
    /// No verdict: an unknown user, a forbidden request, a store error.
    Error,
}

impl Outcome {
    /// In the order of [`Metrics::checks`].
    const ALL: [Outcome; 7] = [
        Outcome::Accepted,
        Outcome::Wrong,
        Outcome::Replayed,
        Outcome::Expired,
        Outcome::Locked,
        Outcome::NotEnrolled,
        Outcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Wrong => "wrong",
            Outcome::Replayed => "replayed",
            Outcome::Expired => "expired",
            Outcome::Locked => "locked",
            Outcome::NotEnrolled => "not_enrolled",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a check and the method it concerns: the method of an
    /// accepted code, or the one a replayed or expired code belonged to.
    fn of(checked: Option<Checked>) -> (Outcome, Option<Method>) {
        match checked {
            Some(Checked::Accepted { method, .. }) => (Outcome::Accepted, Some(method)),
            Some(Checked::Refused { why, tried, .. }) => {
                let outcome = match why {
                    Refusal::Wrong => Outcome::Wrong,
                    Refusal::Replayed => Outcome::Replayed,
                    Refusal::Expired => Outcome::Expired,
                };
                (outcome, tried)
            }
            Some(Checked::Locked(_)) => (Outcome::Locked, None),
            Some(Checked::NotEnrolled) => (Outcome::NotEnrolled, None),
            None => (Outcome::Error, None),
        }
    }

    /// Whether the verification service gives this outcome with `method`
    /// (a replayed code is a TOTP code, an expired one a sent code). These
    /// pairs are shown from the start, so that rate() sees their first
    /// increase; any other once it was counted.
    fn happens_with(self, method: Option<Method>) -> bool {
        match self {
            Outcome::Accepted => method.is_some(),
            Outcome::Replayed => method == Some(Method::Totp),
            Outcome::Expired => matches!(method, Some(Method::Email | Method::Sms)),
            _ => method.is_none(),
        }
    }
}

/// The `method` label's values, in the order of [`Metrics::checks`];
/// `None` is "none" (a wrong code matches no method).
const METHODS: [Option<Method>; 6] = [
    Some(Method::Totp),
    Some(Method::Hotp),
    Some(Method::Backup),
    Some(Method::Email),
    Some(Method::Sms),
    None,
];

fn method_index(method: Option<Method>) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

fn method_label(method: Option<Method>) -> &'static str {
    method.map_or("none", Method::as_str)
}

/// Why a connection was closed without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Over a connection limit.
    Busy,
    /// A frame that is not a request of ours.
    BadRequest,
}

impl Dropped {
    const ALL: [Dropped; 2] = [Dropped::Busy, Dropped::BadRequest];

    fn label(self) -> &'static str {
        match self {
            Dropped::Busy => "busy",
            Dropped::BadRequest => "bad_request",
        }
    }
}

/// Upper bounds, in seconds, of the check-latency buckets: a check on the
/// files takes about a millisecond, on a database a few; waiting for a
/// user's lock or a slow database reaches the timeouts' seconds.
const BOUNDS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram.
#[derive(Default)]
struct Histogram {
    /// Observations per bucket, not cumulative; the last is above every
    /// bound.
    counts: [AtomicU64; BOUNDS.len() + 1],
    micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Relaxed);
    }

    /// `_bucket` samples (cumulative), `_sum` and `_count`. The count is
    /// the sum of the buckets as read, so the page agrees with itself
    /// while checks go on.
    fn render(&self, page: &mut Page, name: &str) {
        let mut total = 0;
        let bounds = BOUNDS.iter().map(|b| b.to_string());
        for (count, le) in self.counts.iter().zip(bounds.chain(["+Inf".into()])) {
            total += count.load(Relaxed);
            page.sample(&format!("{name}_bucket"), &[("le", &le)], total);
        }
        let seconds = self.micros.load(Relaxed) as f64 / 1e6;
        page.sample(&format!("{name}_sum"), &[], seconds);
        page.sample(&format!("{name}_count"), &[], total);
    }
}

impl Metrics {
    /// Counts a request answered with `result` after `took`.
    pub fn answered(&self, request: &Request, result: &Result<Reply, Error>, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(request.op())
            .or_default() += 1;
        if let Err(Error::Store(_)) = result {
            self.store_errors.fetch_add(1, Relaxed);
        }
        if matches!(request, Request::Check { .. }) {
            self.checked(result, took);
        }
    }

    fn checked(&self, result: &Result<Reply, Error>, took: Duration) {
        let checked = match result {
            Ok(Reply::Checked { checked, .. }) => Some(Checked::from(*checked)),
            _ => None,
        };
        let (outcome, method) = Outcome::of(checked);
        self.checks[outcome as usize][method_index(method)].fetch_add(1, Relaxed);
        if let Some(Checked::Refused {
            locked_until: Some(_),
            ..
        }) = checked
        {
            self.lockouts.fetch_add(1, Relaxed);
        }
        self.check_time.observe(took);
    }

    /// Counts a connection closed without an answer.
    pub fn dropped(&self, why: Dropped) {
        self.dropped[why as usize].fetch_add(1, Relaxed);
    }

    /// The page a scrape gets.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut page = Page::default();
        page.family("otpgate_build_info", "gauge", "The otpgated version.");
        page.sample(
            "otpgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        self.render_checks(&mut page);
        self.render_requests(&mut page);
        render_gauges(&mut page, gauges);
        page.0
    }

    fn render_checks(&self, page: &mut Page) {
        let name = "otpgate_checks_total";
        page.family(
            name,
            "counter",
            "Answers checked, by outcome and by method (of an accepted code, or of a replayed or expired one; none when no method matched).",
        );
        for outcome in Outcome::ALL {
            for method in METHODS {
                let count = self.checks[outcome as usize][method_index(method)].load(Relaxed);
                if count > 0 || outcome.happens_with(method) {
                    let labels = [
                        ("outcome", outcome.label()),
                        ("method", method_label(method)),
                    ];
                    page.sample(name, &labels, count);
                }
            }
        }
        page.counter(
            "otpgate_lockouts_total",
            "Wrong answers that locked the account (lockout_after reached).",
            self.lockouts.load(Relaxed),
        );
        let name = "otpgate_check_duration_seconds";
        page.family(
            name,
            "histogram",
            "Seconds to answer a check request, waiting for the user's lock and the store included.",
        );
        self.check_time.render(page, name);
    }

    fn render_requests(&self, page: &mut Page) {
        let name = "otpgate_requests_total";
        page.family(name, "counter", "Requests answered, by operation.");
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for (op, count) in requests.iter() {
            page.sample(name, &[("op", *op)], count);
        }
        drop(requests);
        page.counter(
            "otpgate_store_errors_total",
            "Requests that failed in the store: a record that cannot be read or written, a database that does not answer.",
            self.store_errors.load(Relaxed),
        );
        let name = "otpgate_refused_connections_total";
        page.family(
            name,
            "counter",
            "Connections closed without an answer: over a connection limit (busy), or a frame that is not a request (bad_request).",
        );
        for why in Dropped::ALL {
            let count = self.dropped[why as usize].load(Relaxed);
            page.sample(name, &[("reason", why.label())], count);
        }
    }
}

fn render_gauges(page: &mut Page, gauges: &Gauges) {
    page.gauge(
        "otpgate_connections",
        "Connections being served now.",
        gauges.connections,
    );
    page.gauge(
        "otpgate_worker_threads",
        "Worker threads alive now, busy or idle.",
        gauges.workers,
    );
    if let Some(idle) = gauges.db_idle {
        page.gauge(
            "otpgate_db_idle_connections",
            "Open database connections waiting for a request.",
            idle,
        );
    }
}

/// The text exposition format, version 0.0.4: a family's `# HELP` and
/// `# TYPE`, then its samples.
#[derive(Default)]
struct Page(String);

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: usize) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

/// A label value as the format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use otpgate_config::protocol::{WireChecked, WireMethod, WireRefusal};

    fn check(user: &str) -> Request {
        Request::Check {
            user: user.into(),
            candidates: vec![zeroize::Zeroizing::new("123456".into())],
            keep_backup: false,
            source: None,
            service: None,
            now: None,
        }
    }

    fn checked(checked: WireChecked) -> Result<Reply, Error> {
        Ok(Reply::Checked {
            checked,
            proof: None,
        })
    }

    const GAUGES: Gauges = Gauges {
        connections: 3,
        workers: 5,
        db_idle: None,
    };

    /// Every line is a `# HELP`, a `# TYPE`, or a sample of the family
    /// typed last whose value is a number.
    fn assert_well_formed(page: &str) {
        let mut family = String::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                family = name.to_string();
            } else if !line.starts_with("# HELP ") {
                let (name, value) = line.rsplit_once(' ').unwrap();
                let name = name.split('{').next().unwrap();
                let own = ["", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name == format!("{family}{suffix}"));
                assert!(own, "{line} outside its family {family}");
                value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            }
        }
    }

    #[test]
    fn checks_are_counted_by_outcome_and_method_and_the_page_is_well_formed() {
        let m = Metrics::default();
        let accepted = WireChecked::Accepted {
            device: None,
            method: WireMethod::Totp,
            backups_left: 0,
            candidate: 0,
        };
        let wrong_and_locked = WireChecked::Refused {
            why: WireRefusal::Wrong,
            tried: None,
            locked_until: Some(1),
        };
        let replayed = WireChecked::Refused {
            why: WireRefusal::Replayed,
            tried: Some(WireMethod::Totp),
            locked_until: None,
        };
        let ms = Duration::from_millis(1);
        m.answered(&check("alice"), &checked(accepted), ms);
        m.answered(&check("alice"), &checked(wrong_and_locked), ms);
        m.answered(&check("alice"), &checked(replayed), ms);
        m.answered(&check("bob"), &Err(Error::Store(store_error())), ms);
        m.answered(
            &Request::View { user: "bob".into() },
            &Err(Error::Clock),
            ms,
        );
        m.dropped(Dropped::Busy);
        let page = m.render(&GAUGES);
        assert_well_formed(&page);
        for line in [
            "otpgate_checks_total{outcome=\"accepted\",method=\"totp\"} 1",
            "otpgate_checks_total{outcome=\"accepted\",method=\"sms\"} 0",
            "otpgate_checks_total{outcome=\"wrong\",method=\"none\"} 1",
            "otpgate_checks_total{outcome=\"replayed\",method=\"totp\"} 1",
            "otpgate_checks_total{outcome=\"error\",method=\"none\"} 1",
            "otpgate_checks_total{outcome=\"locked\",method=\"none\"} 0",
            "otpgate_checks_total{outcome=\"expired\",method=\"sms\"} 0",
            "otpgate_lockouts_total 1",
            "otpgate_check_duration_seconds_count 4",
            "otpgate_requests_total{op=\"check\"} 4",
            "otpgate_requests_total{op=\"view\"} 1",
            "otpgate_store_errors_total 1",
            "otpgate_refused_connections_total{reason=\"busy\"} 1",
            "otpgate_refused_connections_total{reason=\"bad_request\"} 0",
            "otpgate_connections 3",
            "otpgate_worker_threads 5",
        ] {
            assert!(page.lines().any(|l| l == line), "no {line} in\n{page}");
        }
        // Impossible pairs are left out; users and codes never appear.
        for never in [
            "outcome=\"wrong\",method=\"totp\"",
            "outcome=\"replayed\",method=\"none\"",
        ] {
            assert!(!page.contains(never), "{never} in\n{page}");
        }
        for secret in ["alice", "bob", "123456"] {
            assert!(!page.contains(secret), "{secret} in\n{page}");
        }
        assert!(!page.contains("otpgate_db_idle_connections"));
        let with_db = m.render(&Gauges {
            db_idle: Some(2),
            ..GAUGES
        });
        assert!(with_db.contains("\notpgate_db_idle_connections 2\n"));
    }

    fn store_error() -> otpgate_config::Error {
        otpgate_config::Error::Database {
            what: "db".into(),
            cause: "down".into(),
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let h = Histogram::default();
        for micros in [500, 1_000, 3_000, 3_000, 2_000_000, 10_000_000] {
            h.observe(Duration::from_micros(micros));
        }
        let mut page = Page::default();
        h.render(&mut page, "t");
        let expected = "t_bucket{le=\"0.001\"} 2
t_bucket{le=\"0.0025\"} 2
t_bucket{le=\"0.005\"} 4
t_bucket{le=\"0.01\"} 4
t_bucket{le=\"0.025\"} 4
t_bucket{le=\"0.05\"} 4
t_bucket{le=\"0.1\"} 4
t_bucket{le=\"0.25\"} 4
t_bucket{le=\"0.5\"} 4
t_bucket{le=\"1\"} 4
t_bucket{le=\"2.5\"} 5
t_bucket{le=\"+Inf\"} 6
t_sum 12.0075
t_count 6
";
        assert_eq!(page.0, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut page = Page::default();
        page.sample("x", &[("op", "a\"b\\c\nd")], 1);
        assert_eq!(page.0, "x{op=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
