//! What the slate benches share: a service with N copies of the airline example, each
//! deployed for its own partner, and a request every copy bids for.

use std::sync::Arc;

use offerhost::api::AppState;
use offerhost::clock::SystemClock;
use offerhost::config::Config;
use offerhost::slate::SlateRequest;
use offerhost::store::SledStore;

// The allocator the `offerhost` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A service over the sled store in `dir` with `plugins` airline plugins.
pub fn service(plugins: usize, dir: &std::path::Path) -> AppState {
    let mut toml = String::from(
        "subject_salt = \"bench\"\n[slate]\ndeadline_ms = 1000\n[limits]\ndeadline_ms = 1000\n[[placement]]\nid = \"app-home\"\nslots = 5\nmax_per_partner = 1\n",
    );
    for i in 0..plugins {
        toml.push_str(&format!(
            "[[partner]]\nid = \"p-{i:02}\"\nallow = [\"tier\", \"affinities\", \"cobrand_holder\"]\nplugin = \"{}\"\n",
            offerhost_plugin_artifacts::AIRLINE.path
        ));
    }
    let config = Config::parse(
        &toml,
        Vec::<(String, String)>::new(),
        std::path::Path::new("/"),
    )
    .unwrap();
    let store = Arc::new(SledStore::open(dir).unwrap());
    offerhost::server::build(config, store, Arc::new(SystemClock)).unwrap()
}

/// A slate request for a high-value traveller (every airline copy bids).
pub fn request(subject: &str) -> SlateRequest {
    serde_json::from_value(serde_json::json!({
        "placement": "app-home",
        "subject": subject,
        "profile": {
            "tier": "high-value",
            "category_spend_share": {"travel": 0.6, "dining": 0.2},
            "cobrand_cards": ["p-00"],
            "marketing_consent": true
        }
    }))
    .unwrap()
}
