//! `pam_otpgate.so`: the PAM entry points. The login flow lands with issue #3;
//! until then this crate only proves that the workspace links the shared library.
#![forbid(unsafe_code)]

/// The version string the module logs on start.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
