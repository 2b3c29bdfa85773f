//! Module arguments. The parser lives in the shared library
//! (`otpgate_config::args`, with the table of every argument), so that
//! `otpgate check` judges a pam.d line with the very code the module runs.
//! Re-exported here so the module's code says `crate::args`.
#![forbid(unsafe_code)]

pub use otpgate_config::args::*;
