//! Helpers every otpgate test suite shares, written once: the rule for a
//! test whose prerequisite is missing ([`require`]: `SKIP: <why>`, or a
//! failure under `CI=true`), root and tool checks, the one real system user
//! tests may create ([`test_user`]), the test TOTP secret and records built
//! from it, and a clock tests set by hand ([`FakeClock`]).
//!
//! A dev-dependency of `config`, `pam-module` and `cli`, and a dependency of
//! the test-only `tests` crate; never packaged. It must stay free of a C
//! build and of any dependency on `pam-module` or `cli`, so that each of
//! them can use it. The flow's `Clock` trait lives in `pam-module`: its users
//! implement it in a few forwarding lines over [`FakeClock`]'s methods.
#![forbid(unsafe_code)]

mod clock;
mod preload;
mod record;
mod skip;
mod user;

pub use clock::FakeClock;
pub use preload::failing_fdatasync_library;
pub use record::{
    TEST_SECRET, TEST_SECRET_BASE32, code_at, test_secret, totp_record, totp_record_with,
};
pub use skip::{have, in_ci, is_root, require, require_root, require_tool};
pub use user::{SystemUser, TEST_USER, alive_pids, system_account, test_user};

/// Returns out of the test (whose SKIP line [`require`] printed) when `$e`
/// is `None`; otherwise the value inside.
#[macro_export]
macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}
