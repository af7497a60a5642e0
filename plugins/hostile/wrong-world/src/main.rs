//! A well-formed component for the wrong world: a WASI command with a `main`.
fn main() {
    println!("I am a command, not an offer plugin");
}
