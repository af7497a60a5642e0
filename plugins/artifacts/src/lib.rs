//! The example partner plugins and the hostile test fixtures, compiled to
//! `wasm32-wasip2` components by this crate's build script.
//!
//! Nothing here is committed as `.wasm`: `cargo build` rebuilds the components from
//! `plugins/` whenever their sources, the SDK or the WIT change.
//!
//! ```
//! let airline = offerhost_plugin_artifacts::AIRLINE;
//! assert_eq!(airline.package, "plugin-airline");
//! assert!(airline.bytes.starts_with(b"\0asm"));
//! ```

/// One compiled component.
#[derive(Debug, Clone, Copy)]
pub struct Artifact {
    /// Cargo package it was built from.
    pub package: &'static str,
    /// Where the component file is on disk.
    pub path: &'static str,
    /// The component itself, embedded at build time.
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
