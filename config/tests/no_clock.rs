//! Time is a parameter: the library never reads the wall clock itself, so
//! the module reads it once per login and tests can set it exactly. (The
//! lock wait uses a monotonic `Instant`, which is not the wall clock.)

use std::path::Path;

#[test]
fn the_library_never_reads_the_wall_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in ["SystemTime", "_current(", "chrono", "time::now"] {
                if text.contains(needle) {
                    offenders.push(format!("{}: {needle}", path.display()));
                }
            }
        }
    }
    assert!(
        files >= 10,
        "expected the library sources in {}",
        src.display()
    );
    assert!(offenders.is_empty(), "{offenders:#?}");
}
