//! Links `pam_otpgate.so` with a version script so that only the `pam_sm_*`
//! entry points are exported.
#![forbid(unsafe_code)]

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let map = format!("{dir}/pam_otpgate.map");
    println!("cargo:rerun-if-changed=pam_otpgate.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={map}");
}
