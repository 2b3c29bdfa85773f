//! TLS to the database, in libpq's words (docs/ARCHITECTURE.md, §3.3).
//!
//! Admins write `daemon.postgres.url` as they would for psql:
//! `sslmode=verify-full sslrootcert=/etc/otpgate/db-ca.pem`, and
//! `sslcert=`/`sslkey=` for a client certificate. The Rust client knows
//! only `disable|prefer|require` and none of the file words, so they are
//! taken out of the string here and become an OpenSSL connector that does
//! what libpq would:
//!
//! | sslmode | TLS | server certificate |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `allow`, `prefer` (libpq's default) | if offered | not checked |
//! | `require` | always | not checked; with `sslrootcert`, as `verify-ca` |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert` and naming the host |
//!
//! `sslrootcert=system` trusts the system's CA store (libpq 16); any other
//! value is a file whose CAs alone are trusted. A verifying mode without
//! `sslrootcert` is a config error rather than a guess.

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use otpgate_config::{Error, Result};
use postgres::config::SslMode;
use postgres_openssl::MakeTlsConnector;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS words of a connection string.
#[derive(Debug, PartialEq, Eq)]
pub struct Tls {
    pub mode: Mode,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// The words this module takes out of a connection string.
const WORDS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

fn invalid(why: impl Into<String>) -> Error {
    Error::Database {
        what: "daemon.postgres.url".into(),
        cause: why.into(),
    }
}

/// Splits `url` into the string the client parses and its TLS words.
pub fn split(url: &str) -> Result<(String, Tls)> {
    let (rest, words) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_uri(url)?
    } else {
        split_keywords(url)?
    };
    Ok((rest, Tls::from_words(&words)?))
}

impl Tls {
    fn from_words(words: &[(String, String)]) -> Result<Tls> {
        let word = |name: &str| {
            words
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let root_cert = word("sslrootcert").filter(|v| !v.is_empty());
        let mode = match word("sslmode").as_deref() {
            None | Some("prefer" | "allow") => Mode::Prefer,
            Some("disable") => Mode::Disable,
            Some("require") if root_cert.is_some() => Mode::VerifyCa,
            Some("require") => Mode::Require,
            Some("verify-ca") => Mode::VerifyCa,
            Some("verify-full") => Mode::VerifyFull,
            Some(other) => return Err(invalid(format!("unknown sslmode `{other}`"))),
        };
        if matches!(mode, Mode::VerifyCa | Mode::VerifyFull) && root_cert.is_none() {
            return Err(invalid(
                "sslmode=verify-ca/verify-full needs sslrootcert=FILE (or sslrootcert=system)",
            ));
        }
        let cert = word("sslcert").filter(|v| !v.is_empty());
        let key = word("sslkey").filter(|v| !v.is_empty());
        if cert.is_some() != key.is_some() {
            return Err(invalid("sslcert and sslkey go together"));
        }
        Ok(Tls {
            mode,
            root_cert,
            cert,
            key,
        })
    }

    /// The client's mode: whether TLS is tried, required or never used.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// How the server is checked, for the start-up line and `check`.
    pub fn describe(&self) -> String {
        let mode = match self.mode {
            Mode::Disable => "TLS off",
            Mode::Prefer => {
                "TLS if offered, server not verified: use sslmode=verify-full unless the database is on this host"
            }
            Mode::Require => {
                "TLS, server not verified: use sslmode=verify-full unless the database is on this host"
            }
            Mode::VerifyCa => "TLS, server certificate verified (CA only)",
            Mode::VerifyFull => "TLS, server certificate and host name verified",
        };
        match self.cert {
            Some(_) => format!("{mode}, client certificate"),
            None => mode.to_string(),
        }
    }

    /// The connector doing what the words ask.
    pub fn connector(&self) -> Result<MakeTlsConnector> {
        let tls = |what: &str, e: openssl::error::ErrorStack| invalid(format!("{what}: {e}"));
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| tls("TLS", e))?;
        match (self.mode, self.root_cert.as_deref()) {
            (Mode::VerifyCa | Mode::VerifyFull, Some("system")) => {}
            (Mode::VerifyCa | Mode::VerifyFull, Some(file)) => {
                builder.set_cert_store(trusted(file)?);
            }
            _ => builder.set_verify(SslVerifyMode::NONE),
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            crate::db::check_private(key)?;
            builder
                .set_certificate_chain_file(cert)
                .map_err(|e| tls(cert, e))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| tls(key, e))?;
            builder
                .check_private_key()
                .map_err(|e| tls("sslcert and sslkey do not match", e))?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        if self.mode != Mode::VerifyFull {
            // OpenSSL checks the name by default; only verify-full wants it.
            connector.set_callback(|c, _| {
                c.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }
}

/// A store trusting the CAs in `file` and nothing else.
fn trusted(file: &str) -> Result<openssl::x509::store::X509Store> {
    let pem = std::fs::read(file).map_err(|e| invalid(format!("sslrootcert {file}: {e}")))?;
    let certs =
        X509::stack_from_pem(&pem).map_err(|e| invalid(format!("sslrootcert {file}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("sslrootcert {file}: no certificate")));
    }
    let mut store = X509StoreBuilder::new().map_err(|e| invalid(e.to_string()))?;
    for cert in certs {
        store
            .add_cert(cert)
            .map_err(|e| invalid(format!("sslrootcert {file}: {e}")))?;
    }
    Ok(store.build())
}

/// `key=value ...` (libpq's keyword form): values plain or in single
/// quotes with `\` escapes. The rest is rebuilt with every value quoted.
fn split_keywords(url: &str) -> Result<(String, Vec<(String, String)>)> {
    let mut rest = Vec::new();
    let mut words = Vec::new();
    for (key, value) in keyword_pairs(url)? {
        if WORDS.contains(&key.as_str()) {
            words.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rest.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((rest.join(" "), words))
}

fn keyword_pairs(text: &str) -> Result<Vec<(String, String)>> {
    let mut chars = text.chars().peekable();
    let mut pairs = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(invalid(format!("`{key}` has no `=`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.extend(chars.next()),
                Some('\'') if quoted => break,
                Some(c) if quoted || !c.is_whitespace() => value.push(c),
                None if quoted => return Err(invalid(format!("`{key}`: unterminated quote"))),
                _ => break,
            }
        }
        pairs.push((key, value));
    }
}

/// `postgresql://...?k=v&...`: the TLS words taken out of the query.
fn split_uri(url: &str) -> Result<(String, Vec<(String, String)>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Vec::new()));
    };
    let mut rest = Vec::new();
    let mut words = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decoded(key)?;
        if WORDS.contains(&key.as_str()) {
            words.push((key, percent_decoded(value)?));
        } else {
            rest.push(part);
        }
    }
    match rest.is_empty() {
        true => Ok((base.to_string(), words)),
        false => Ok((format!("{base}?{}", rest.join("&")), words)),
    }
}

fn percent_decoded(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad %-escape in `{text}`")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("`{text}` is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(url: &str) -> (String, Tls) {
        split(url).unwrap()
    }

    #[test]
    fn keyword_form_loses_only_the_tls_words() {
        let (rest, tls) = words(
            "host=db1,db2 port = 5432 user=otpgate sslmode=verify-full sslrootcert='/etc/otp gate/ca.pem' application_name='it\\'s'",
        );
        assert_eq!(
            rest,
            "host='db1,db2' port='5432' user='otpgate' application_name='it\\'s'"
        );
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/otp gate/ca.pem"));
        let parsed: postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_application_name(), Some("it's"));
    }

    #[test]
    fn uri_form_loses_only_the_tls_words() {
        let (rest, tls) = words(
            "postgresql://otpgate@db1,db2/otpgate?target_session_attrs=read-write&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&sslcert=/c.pem&sslkey=/k.pem",
        );
        assert_eq!(
            rest,
            "postgresql://otpgate@db1,db2/otpgate?target_session_attrs=read-write"
        );
        assert_eq!(tls.mode, Mode::VerifyCa);
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(tls.cert.as_deref(), Some("/c.pem"));
        let (rest, _) = words("postgres://h/db?sslmode=disable");
        assert_eq!(rest, "postgres://h/db");
    }

    #[test]
    fn modes_follow_libpq() {
        assert_eq!(words("host=h").1.mode, Mode::Prefer);
        assert_eq!(words("host=h sslmode=allow").1.mode, Mode::Prefer);
        assert_eq!(words("host=h sslmode=require").1.mode, Mode::Require);
        // libpq: require with a root certificate verifies the CA.
        let (_, tls) = words("host=h sslmode=require sslrootcert=/ca.pem");
        assert_eq!(tls.mode, Mode::VerifyCa);
        assert_eq!(tls.ssl_mode(), SslMode::Require);
        assert_eq!(
            words("host=h sslmode=disable").1.ssl_mode(),
            SslMode::Disable
        );
    }

    #[test]
    fn unclear_tls_words_are_config_errors() {
        for url in [
            "host=h sslmode=verify-full",
            "host=h sslmode=verify-ca sslrootcert=",
            "host=h sslmode=sometimes",
            "host=h sslcert=/c.pem",
            "host=h sslmode='verify-full",
            "host=h sslmode",
            "postgres://h/db?sslrootcert=%zz",
        ] {
            assert!(split(url).is_err(), "{url} accepted");
        }
    }
}
