//! A panic inside the module, through a real sshd (issue #6, boundary): the
//! login is refused with `PAM_SYSTEM_ERR` and logged, and sshd lives on to
//! serve the next connection. Uses the debug-only `debug_panic_for_tests`
//! argument (absent from release builds; the hardening suite checks that).
#![forbid(unsafe_code)]

use otpgate_tests::sshd::*;
use otpgate_tests::*;

#[test]
fn a_panic_in_the_module_refuses_the_login_and_sshd_serves_the_next_one() {
    for stage in ["start", "update", "ffi"] {
        let h = need!(Harness::new(""));
        let secret = h.enroll();
        let auth = vec![
            password_line(&h),
            h.module_line("required", &format!("debug_panic_for_tests={stage}")),
        ];
        let sshd = need!(Sshd::start(
            &h,
            &SshdSetup::new("keyboard-interactive", auth)
        ));
        for attempt in 1..=2 {
            // `update` panics only once a code is checked: give the right one.
            let run = sshd.ssh("root").code(&totp_at(&secret, now())).run();
            run.assert_refused();
            assert!(
                run.prompts.iter().any(|p| p.ends_with("Password: ")),
                "{stage}, connection {attempt}: sshd did not serve it\n{run:#?}"
            );
        }
        assert!(
            !sshd.log().contains("fatal"),
            "{stage}: sshd logged a fatal error\n{}",
            sshd.log()
        );
        if stage != "ffi" {
            // The flow's guard logs the panic; a panic at the FFI entry is
            // caught outside it, before any log socket exists.
            let log = h.log();
            assert!(
                log.iter()
                    .any(|l| l.contains("outcome=error") && l.contains("panic")),
                "{stage}: {log:#?}"
            );
        }
    }
}
