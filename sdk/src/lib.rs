//! Write offerhost partner-offer plugins in plain Rust.
//!
//! A plugin is a type that implements [`OfferPlugin`], exported with
//! [`export_plugin!`]. The host calls [`OfferPlugin::bid`] with the anonymized features of
//! one customer; the plugin answers with bids. Here is a whole plugin:
//!
//! ```
//! use offerhost_sdk::{config_or, export_plugin, Features, OfferPlugin, Offer, PluginError,
//!                     PluginInfo, Reward, Tier, Bid};
//!
//! pub struct CoffeeClub;
//!
//! impl OfferPlugin for CoffeeClub {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("coffee-club", "1.0.0", &["dining"])
//!     }
//!
//!     fn bid(features: &Features) -> Result<Vec<Bid>, PluginError> {
//!         // Ops can tune the reward without a new upload.
//!         let bps: u32 = config_or("cashback_bps", 800)?;
//!         let dining = features.affinity("dining");
//!         if dining < 0.2 || features.tier == Some(Tier::AtRisk) {
//!             return Ok(vec![]);
//!         }
//!         let offer = Offer::new("coffee-8pct", "8% back at Coffee Club", Reward::CashbackBps(bps))
//!             .category("dining")
//!             .valid_days(14);
//!         Ok(vec![offer.bid(80, dining)])
//!     }
//! }
//!
//! export_plugin!(CoffeeClub);
//!
//! // Plugin logic is ordinary Rust, so it unit-tests natively with `cargo test`:
//! use offerhost_sdk::{testing, Channel};
//! testing::set_config([("cashback_bps", "500")]);
//! let f = Features::new("app-home", Channel::MobileApp).with_affinity("dining", 0.6);
//! let bids = CoffeeClub::bid(&f).unwrap();
//! assert_eq!(bids[0].offer.reward, Reward::CashbackBps(500));
//! ```
//!
//! Build the component with `cargo build --release --target wasm32-wasip2` (the crate
//! type must include `cdylib`), then try it with
//! `offerhost plugin run target/wasm32-wasip2/release/<name>.wasm --request req.json`.
//!
//! What a plugin can reach: the features it is given, [`config`] values set by issuer ops
//! and a bounded [`log`]. No files, network, environment variables or real clock: the host
//! links WASI with no capabilities, a fixed clock and fixed "random" bytes, so the same
//! input always gives the same bids. Every call runs in a fresh instance, so statics do
//! not carry anything from one customer to the next.
#![deny(missing_docs)]

mod export;
mod features;
mod host;
mod offer;
pub mod testing;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "offer-plugin",
        pub_export_macro: true,
        default_bindings_module: "offerhost_sdk::wit",
    });
}

#[doc(hidden)]
pub use export::__private;
pub use export::OfferPlugin;
pub use features::{
    Affinity, Channel, Context, DayOfWeek, Features, LifecycleStage, PartOfDay, Rfm, Season, Tier,
};
pub use host::{LogLevel, config, config_or, debug, error, info, log, warn};
pub use offer::{Bid, Money, Offer, PluginError, PluginInfo, Reward};
