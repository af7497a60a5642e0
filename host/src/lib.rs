//! offerhost: a card issuer's partner-offer plugin host.
//!
//! Co-brand partners write offer plugins against the WIT contract in `wit/`, compiled to
//! WebAssembly components. This crate loads them into a [`sandbox`], feeds them the
//! anonymized features of one customer ([`model::Features`]) and gets back bids
//! ([`model::Bid`]) under strict per-call [`sandbox::Limits`].

pub mod cli;
pub mod model;
pub mod sandbox;
