//! `otpgate-config`: everything otpgate's PAM module and CLI share that is
//! neither PAM nor terminal code.
//!
//! - [`system`]: the system policy (`/etc/otpgate/config.toml`) and
//!   module-argument overrides;
//! - [`args`]: the module's arguments (a pam.d line's words), parsed for
//!   the module and for `otpgate check`;
//! - [`record`]: the per-user file, code verification, lockout, remembered
//!   hosts;
//! - [`store`]: the store seam ([`Store`]: read a user's record, change it
//!   in one transaction) and its backends: the user file (read without
//!   following symlinks, updated atomically under a lock, with the user's
//!   file-system identity) and a memory store for tests;
//! - [`verification`]: the one service that checks an answer and sends a
//!   code, for the module and the CLI alike; [`texts`]: every message a
//!   user reads about it;
//! - [`secure_open`]: the one checked open for every file read or written
//!   with privilege (no symlinks followed; type, owner, mode and size
//!   checked);
//! - `sys`: the few system calls without a safe wrapper (per-thread
//!   groups, the channel command's isolation), the crate's only `unsafe`;
//! - [`ssh_auth`]: what sshd says about the key a login used
//!   (`SSH_AUTH_INFO_0`), and `policy.trusted_ssh_keys`;
//! - [`otp`], [`backup`], [`answer`], [`net`]: the pieces those use.
//!
//! Time and randomness come from the caller or the OS; nothing here reads
//! the wall clock, so tests are exact.
// The one exception is `sys`: the system calls without a safe wrapper.
#![deny(unsafe_code)]

pub mod account;
pub mod answer;
pub mod args;
pub mod backup;
pub mod change;
pub mod channel;
pub mod deliver;
pub mod error;
pub mod identity;
pub mod import;
pub mod logline;
pub mod net;
pub mod otp;
pub mod protocol;
pub mod record;
pub mod remote;
pub mod secure_open;
pub mod service;
pub mod ssh_auth;
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod system;
pub mod texts;
pub mod verification;

#[cfg(test)]
mod testing;

pub use account::Account;
pub use answer::Answer;
pub use error::{Error, Result};
pub use record::{Method, UserRecord, Verdict};
pub use store::{Store, StoreExt, UserFile};
pub use system::SystemConfig;
