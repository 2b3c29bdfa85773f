pub fn kill_9_during_updates_leaves_the_old_or_the_new_file() {
    println!("SKIP: not written yet");
}
