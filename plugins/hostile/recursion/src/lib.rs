//! Recurses without end: the wasm stack overflows and the host must catch it.
use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin};

/// Recurses until the stack is gone.
pub struct Abyss;

#[inline(never)]
#[allow(unconditional_recursion)]
fn descend(depth: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    descend(depth + 1, pad).wrapping_add(pad[(depth % 16) as usize])
}

impl OfferPlugin for Abyss {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-recursion", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        let n = descend(0, [7; 16]);
        Err(PluginError::Internal(format!("unreachable: {n}")))
    }
}

export_plugin!(Abyss);
