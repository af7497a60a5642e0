//! Workspace-level integration tests, grouped by what a user does.

mod hostile;
mod isolation;
mod limits;
mod loading;
mod partner_runs_plugin;
