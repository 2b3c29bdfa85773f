//! `pam_otpgate.so`: the otpgate PAM module.
//!
//! - [`flow`]: the login flow of `pam_sm_authenticate`, behind the small
//!   [`flow::Handle`] and [`flow::Clock`] traits so a scripted fake drives it
//!   in tests;
//! - [`args`]: module arguments (parsed by `otpgate_config::args`);
//! - [`log`]: one syslog line per decision, written to `/dev/log` without
//!   glibc's `syslog()`; [`reason`]: the reasons those lines give;
//! - `ffi`: the `pam_sm_*` entry points and the real PAM handle, the only
//!   place with `unsafe`.
//!
//! Only the `pam_sm_*` symbols are exported (`pam_otpgate.map`).
#![deny(unsafe_code)]

pub mod args;
#[allow(unsafe_code)]
mod ffi;
pub mod flow;
pub mod log;
pub mod reason;

/// The version string of the module.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
