//! Certificates for the TLS tests, made with the `openssl` command: a CA,
//! a rogue CA (someone else's, as a man in the middle would hold), server
//! certificates for 127.0.0.1 from each, one from the right CA for another
//! name, and a client certificate for the role `otpgate`. EC P-256 keys,
//! valid two days, private keys mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of `NAME.pem` certificates and `NAME.key` keys.
pub struct Certs {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// Makes every certificate in `dir` (created).
    pub fn new(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).expect("mkdir");
        let certs = Certs {
            dir: dir.to_path_buf(),
        };
        certs.authority("ca");
        certs.authority("rogue-ca");
        certs.issue("server", "ca", "127.0.0.1", "IP:127.0.0.1");
        certs.issue("rogue-server", "rogue-ca", "127.0.0.1", "IP:127.0.0.1");
        certs.issue("wrong-name", "ca", "db.example", "DNS:db.example");
        certs.issue("client", "ca", "otpgate", "DNS:otpgate");
        // The README's database server (tests/tests/fleet_readme.rs).
        certs.issue(
            "db.example.org",
            "ca",
            "db.example.org",
            "DNS:db.example.org",
        );
        certs
    }

    /// `NAME.pem`.
    pub fn pem(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `NAME.key`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn new_key(&self, name: &str) {
        let key = format!("{name}.key");
        openssl(
            &self.dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
        std::fs::set_permissions(self.key(name), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }

    fn authority(&self, name: &str) {
        self.new_key(name);
        let subject = format!("/CN=otpgate test {name}");
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &subject,
            ],
        );
    }

    /// A certificate for `cn` (and `san`) signed by `ca`.
    fn issue(&self, name: &str, ca: &str, cn: &str, san: &str) {
        self.new_key(name);
        let ext = format!("{name}.ext");
        std::fs::write(self.dir.join(&ext), format!("subjectAltName={san}\n")).expect("ext");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}
