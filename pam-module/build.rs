//! Links `pam_otpgate.so` with a version script so that only the `pam_sm_*`
//! entry points are exported, and as NODELETE: once loaded it stays loaded
//! when libpam dlclose()s it at `pam_end`. Unloading Rust code is unsafe
//! while a thread of it may still run (the lock waiter of `otpgate-config`
//! outlives a lock timeout), and a long-lived PAM application (saslauthd,
//! a VPN or mail server) would otherwise map, relocate and initialise the
//! library again for every login: 2.7x the cost per login in
//! `benches/run.sh`.
#![forbid(unsafe_code)]

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let map = format!("{dir}/pam_otpgate.map");
    println!("cargo:rerun-if-changed=pam_otpgate.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={map}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Relative relocations packed as DT_RELR (binutils >= 2.38, glibc >= 2.36):
    // ~2,000 RELA entries the loader applies one by one at every dlopen()
    // shrink to a bitmap of a few hundred bytes. Unused sections are dropped.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--gc-sections");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-O1");
    // The unwinder linked in, not `libgcc_s.so.1` loaded beside us: that
    // library cost a fresh process ~150 µs of every login's dlopen() here
    // (its constructor probes the CPU with `cpuid`, slow in a VM). A panic
    // still unwinds to the `catch_unwind` at the C boundary, and none
    // crosses into the host, so a private copy of the unwinder is safe.
    // Listed as this crate's own native library, `libgcc_eh.a` comes before
    // the `-lgcc_s` of Rust's std on the link line; with `--as-needed` the
    // shared library then satisfies nothing and is not recorded as NEEDED
    // (checked by otpgate-tests).
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}
