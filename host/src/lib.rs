//! offerhost: a card issuer's partner-offer plugin host.
//!
//! Co-brand partners write offer plugins against the WIT contract in `wit/`, compiled to
//! WebAssembly components. This crate loads them into a [`sandbox`], turns a customer's
//! profile into anonymized features ([`slate::profile`]), calls every eligible plugin in
//! parallel, validates and ranks their bids under issuer policy and frequency caps
//! ([`slate`]) and serves the result over HTTP ([`api`]).
//!
//! The library is the service; `main.rs` only parses the command line. Tests build the
//! router with [`api::app`] and drive it without a socket.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod report;
pub mod sandbox;
pub mod server;
pub mod slate;
pub mod store;
