//! Integration tests that run the `atc-bt` binary: one module per command
//! (and `regression`, `regression_metrics`: one test per fault found), in
//! one test target so Cargo compiles and links one test binary instead of
//! twelve (ripgrep and uv group theirs the same way). Select a module with
//! `cargo test --test cli run_cli::`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../report_support/mod.rs"]
mod report_support;

mod cache_cli;
mod cli_compute;
mod data_cli;
mod examples;
mod golden;
mod regression;
mod regression_metrics;
mod regression_params;
mod report_cli;
mod rerun_cli;
mod run_cli;
mod shard_cli;
mod shard_deploy;
mod shard_shared_cli;
mod shared_cli;
mod signals_cli;
mod stops_cli;
mod sweep_cli;
