//! Builds `pam_driver`, the small C program that drives real libpam for the
//! end-to-end tests (and, later, benchmarks): `unsafe` stays in pam-module.
//! Without a C compiler or libpam's headers the build still succeeds and the
//! tests that need the driver say why they skip (or fail under `CI=true`).
#![forbid(unsafe_code)]

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=driver/pam_driver.c");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let exe = out.join("pam_driver");
    let source = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .join("driver/pam_driver.c");
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(2)
        .warnings(true)
        .try_get_compiler();
    let result = match compiler {
        Ok(c) => c
            .to_command()
            .arg("-o")
            .arg(&exe)
            .arg(&source)
            .args(["-lpam", "-ldl"])
            .output()
            .map_err(|e| e.to_string())
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&o.stderr).into_owned())
                }
            }),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => {
            println!("cargo:rustc-env=OTPGATE_PAM_DRIVER={}", exe.display());
            println!("cargo:rustc-env=OTPGATE_PAM_DRIVER_ERROR=");
        }
        Err(e) => {
            let first = e.lines().next().unwrap_or("").to_string();
            println!("cargo:warning=pam_driver not built (install gcc and libpam0g-dev): {first}");
            println!("cargo:rustc-env=OTPGATE_PAM_DRIVER=");
            println!("cargo:rustc-env=OTPGATE_PAM_DRIVER_ERROR={first}");
        }
    }
}
