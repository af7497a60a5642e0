//! Native unit-test support: set the configuration a plugin reads and inspect what it
//! logged, without the host.
//!
//! State is per thread, so tests running in parallel do not see each other's values.
//! Inside the sandbox these functions do nothing useful; use them from `#[cfg(test)]` code.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::LogLevel;

#[derive(Default)]
pub(crate) struct Native {
    pub(crate) config: HashMap<String, String>,
    pub(crate) logs: Vec<(LogLevel, String)>,
}

thread_local! {
    pub(crate) static NATIVE: RefCell<Native> = RefCell::new(Native::default());
}

/// Replaces this thread's plugin configuration with `entries`.
///
/// ```
/// use offerhost_sdk::{config, testing};
///
/// testing::set_config([("currency", "CNY")]);
/// assert_eq!(config("currency").as_deref(), Some("CNY"));
/// ```
pub fn set_config<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let config = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    NATIVE.with(|n| n.borrow_mut().config = config);
}

/// Removes every configuration value of this thread.
pub fn clear_config() {
    NATIVE.with(|n| n.borrow_mut().config.clear());
}

/// Returns and forgets the lines logged on this thread so far.
pub fn take_logs() -> Vec<(LogLevel, String)> {
    NATIVE.with(|n| std::mem::take(&mut n.borrow_mut().logs))
}
