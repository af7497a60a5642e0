//! Workspace-level integration tests, grouped by what a user does.

mod app_fetches_slate;
mod bad_requests;
mod caps;
mod hostile;
mod hostile_slates;
mod isolation;
mod limits;
mod loading;
mod measurement;
mod openapi;
mod ops_rollout;
mod partner_runs_plugin;
mod replicas;
mod restart;
mod serve_and_demo;
mod store_backends;
