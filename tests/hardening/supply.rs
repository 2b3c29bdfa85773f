pub fn dependencies_counted_and_checked_offline() {
    println!("SKIP: not written yet");
}
