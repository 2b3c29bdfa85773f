//! The built `.so` as other programs see it: its symbol table, pamtester
//! with pam_wrapper and pam_matrix (password first, then our module), the
//! reference peer `pam_google_authenticator.so` in the same harness, and no
//! `/dev/console` without a syslog daemon.
#![forbid(unsafe_code)]

use std::process::Command;

use otpgate_tests::*;

const ENTRY_POINTS: [&str; 6] = [
    "pam_sm_acct_mgmt",
    "pam_sm_authenticate",
    "pam_sm_chauthtok",
    "pam_sm_close_session",
    "pam_sm_open_session",
    "pam_sm_setcred",
];

// --- Exports ----------------------------------------------------------------

/// What binutils' `tool` with `args` prints about the built module.
fn binutils(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(module())
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(out.status.success(), "{tool} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn only_pam_sm_symbols_are_exported() {
    need!(require_tool("nm", "binutils"));
    let so = module();
    let mut names: Vec<String> = binutils("nm", &["-D", "--defined-only", "--format=posix"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, ENTRY_POINTS, "dynamic symbols of {}", so.display());

    // Logging must not go through glibc's syslog(), which falls back to
    // /dev/console and keeps global openlog state in sshd.
    let undefined = binutils("nm", &["-D", "--undefined-only", "--format=posix"]);
    for name in ["syslog", "vsyslog", "openlog", "__syslog_chk"] {
        assert!(
            !undefined
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} is used"
        );
    }
}

/// What a process loading the module also loads: libpam and libc, nothing
/// else. `libgcc_s.so.1` (Rust's unwinder on `*-linux-gnu`) cost a fresh
/// sshd process ~150 µs per login to load; the unwinder is linked in
/// (pam-module/build.rs).
#[test]
fn the_module_needs_only_libpam_and_libc() {
    need!(require_tool("readelf", "binutils"));
    let text = binutils("readelf", &["-d", "-W"]);
    let mut needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        // The dynamic loader, named per architecture.
        .filter(|name| !name.starts_with("ld-linux"))
        .collect();
    needed.sort();
    assert_eq!(
        needed,
        ["libc.so.6", "libpam.so.0"],
        "NEEDED of {}",
        module().display()
    );
}

/// No `cpuid` in the module: in a VM each one traps to the hypervisor
/// (8.8 µs on the benchmark machine), and the hashes' run-time feature
/// detection ran six per fresh sshd process. The portable SHA code is
/// chosen in `.cargo/config.toml`.
#[test]
fn the_module_never_runs_cpuid() {
    need!(require_tool("objdump", "binutils"));
    let text = binutils("objdump", &["-d", "--no-show-raw-insn"]);
    assert!(text.contains("\tret"), "objdump printed no code");
    let cpuid = text.lines().filter(|l| l.contains("\tcpuid")).count();
    assert_eq!(cpuid, 0, "cpuid instructions in {}", module().display());
}

#[test]
fn dlopen_finds_the_entry_points_and_nothing_of_rust() {
    let driver = need!(driver());
    let so = module();
    let mut wanted: Vec<&str> = ENTRY_POINTS.to_vec();
    let hidden = [
        "rust_eh_personality",
        "__rust_alloc",
        "rust_begin_unwind",
        "VERSION",
    ];
    wanted.extend(hidden);
    let out = Command::new(driver)
        .arg("-L")
        .arg(&so)
        .args(&wanted)
        .output()
        .expect("pam_driver -L");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ENTRY_POINTS {
        assert!(text.contains(&format!("FOUND {name}\n")), "{text}");
    }
    for name in hidden {
        assert!(text.contains(&format!("MISSING {name}\n")), "{text}");
    }
}

// --- pamtester + pam_wrapper + pam_matrix -------------------------------------

/// Runs pamtester on `service` for root with `stdin`, under pam_wrapper.
fn pamtester(h: &Harness, service: &str, rhost: &str, stdin: &str) -> (bool, String) {
    let out = h.run_wrapped(
        Command::new("pamtester")
            .args(["-v", "-I", &format!("rhost={rhost}"), service, "root"])
            .arg("authenticate"),
        stdin,
    );
    (out.status.success(), printed(&out))
}

/// A harness as in docs/ARCHITECTURE.md, §7 (pamtester + pam_wrapper):
/// pam_matrix (password from a file) `requisite`, then our module.
fn matrix_harness(config: &str) -> Option<Harness> {
    require_tool("pamtester", "pamtester")?;
    let wrapper = std::path::Path::new(PAM_WRAPPER_MODULES).join("pam_matrix.so");
    require(
        wrapper.exists(),
        "pam_matrix.so missing (Debian package libpam-wrapper)",
    )?;
    let h = Harness::new(config)?;
    let passdb = h.path("passdb");
    std::fs::write(&passdb, "root:secret:otp-matrix\n").expect("passdb");
    h.service(
        "otp-matrix",
        &[
            format!(
                "auth requisite {} passdb={}",
                wrapper.display(),
                passdb.display()
            ),
            h.module_line("required", ""),
        ],
    );
    Some(h)
}

#[test]
fn pamtester_password_then_totp_code_succeeds() {
    let h = need!(matrix_harness(""));
    let secret = h.enroll();
    let (ok, out) = pamtester(
        &h,
        "otp-matrix",
        "10.0.0.1",
        &format!("secret\n{}\n", totp_at(&secret, now())),
    );
    assert!(ok, "{out}");
    assert!(out.contains("Password: Verification code: "), "{out}");
    assert!(out.contains("successfully authenticated"), "{out}");
    let log = h.log();
    assert!(
        log.iter()
            .any(|l| l.contains("rhost=10.0.0.1") && l.contains("method=totp")),
        "{log:?}"
    );
}

#[test]
fn pamtester_wrong_code_after_right_password_fails() {
    let h = need!(matrix_harness("max_attempts = 1"));
    h.enroll();
    let (ok, out) = pamtester(&h, "otp-matrix", "10.0.0.1", "secret\nabcdef\n");
    assert!(!ok, "{out}");
    assert!(out.contains("Wrong code."), "{out}");
}

#[test]
fn pamtester_wrong_password_never_reaches_the_code_prompt() {
    let h = need!(matrix_harness(""));
    let secret = h.enroll();
    let (ok, out) = pamtester(
        &h,
        "otp-matrix",
        "10.0.0.1",
        &format!("wrong\n{}\n", totp_at(&secret, now())),
    );
    assert!(!ok, "{out}");
    assert!(!out.contains("Verification code"), "{out}");
    assert_eq!(h.record("root").devices[0].last_step, 0, "code not used up");
}

#[test]
fn pamtester_trusted_network_skips_the_code_prompt() {
    let h = need!(matrix_harness("trusted_networks = [\"10.0.0.0/8\"]"));
    h.enroll();
    let (ok, out) = pamtester(&h, "otp-matrix", "10.9.8.7", "secret\n");
    assert!(ok, "{out}");
    assert!(!out.contains("Verification code"), "{out}");
}

// --- The reference peer ----------------------------------------------------------

/// Where Debian installs pam_google_authenticator.so.
fn google_authenticator() -> Option<std::path::PathBuf> {
    let found = [
        "/lib/x86_64-linux-gnu/security/pam_google_authenticator.so",
        "/usr/lib/x86_64-linux-gnu/security/pam_google_authenticator.so",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists());
    require(
        found.is_some(),
        "pam_google_authenticator.so missing (Debian package libpam-google-authenticator)",
    )?;
    found
}

#[test]
fn google_authenticator_and_otpgate_accept_the_same_oathtool_code() {
    let ga = need!(google_authenticator());
    let h = need!(Harness::new(""));
    let secret = h.enroll();
    // Its file: the secret, then options; root's, mode 0600.
    let ga_dir = h.path("ga");
    std::fs::create_dir(&ga_dir).expect("mkdir");
    write_private(
        &ga_dir.join("root"),
        format!("{secret}\n\" TOTP_AUTH\n").as_bytes(),
    );
    h.service(
        "google",
        &[format!(
            "auth required {} secret={}/${{USER}} user=root",
            ga.display(),
            ga_dir.display()
        )],
    );
    h.otp_service("");
    avoid_step_edge();
    let code = totp_at(&secret, now());
    let peer = h
        .login()
        .service("google")
        .rhost("10.0.0.2")
        .answer(&code)
        .run();
    peer.assert("PAM_SUCCESS");
    let ours = h.login().rhost("10.0.0.2").answer(&code).run();
    ours.assert("PAM_SUCCESS");
    // Both ask once, with the same words.
    assert_eq!(peer.prompts(), ours.prompts());
    // And both refuse a wrong code.
    h.login()
        .service("google")
        .answer("000000")
        .run()
        .assert("PAM_AUTH_ERR");
}

// --- No syslog daemon -------------------------------------------------------------

#[test]
fn without_a_syslog_daemon_nothing_is_written_to_dev_console() {
    need!(require_tool("strace", "strace"));
    let h = need!(Harness::new(""));
    let secret = h.enroll();
    // Our module with its default log socket, /dev/log.
    h.service(
        "plain",
        &[format!(
            "auth required {} config={}",
            h.module.display(),
            h.config_path().display()
        )],
    );
    let trace = h.path("trace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%file,connect,sendto", "-o"])
        .arg(&trace)
        .arg(&h.driver)
        .arg("-c")
        .arg(h.path("pam.d"))
        .args([
            "-a",
            "000000",
            "-a",
            &totp_at(&secret, now()),
            "plain",
            "root",
        ])
        .output()
        .expect("strace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("RESULT 0 PAM_SUCCESS"), "{stdout}");
    let trace = std::fs::read_to_string(&trace).expect("trace");
    assert!(
        !trace.contains("/dev/console"),
        "/dev/console touched:\n{trace}"
    );
    // Our lines went (or tried to go) to /dev/log.
    assert!(trace.contains("pam_otpgate["), "{trace}");
}
