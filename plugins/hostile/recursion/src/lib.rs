//! Recurses without end: the wasm stack overflows and the host must catch it.
use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

/// Recurses until the stack is gone.
pub struct Abyss;

#[inline(never)]
#[allow(unconditional_recursion)]
fn descend(depth: u64) -> u64 {
    // Scalars only, so every frame lives on the engine's WebAssembly stack.
    std::hint::black_box(descend(std::hint::black_box(depth + 1))).wrapping_add(depth)
}

impl OfferPlugin for Abyss {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-recursion", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        let n = descend(0);
        Err(PluginError::Internal(format!("unreachable: {n}")))
    }
}

export_plugin!(Abyss);
