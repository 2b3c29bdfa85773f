pub fn a_million_generated_inputs_never_panic_a_parser() {
    println!("SKIP: not written yet");
}
