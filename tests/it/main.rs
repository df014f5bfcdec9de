//! The integration tests, as ONE test binary: each file here is a module, and the harness
//! (`tests/common/`) is `crate::common`. One binary is linked once instead of once per file, which is
//! most of what `cargo test --release` used to spend before the first test ran (docs/architecture.md,
//! "Build time"). Run one file's tests with `cargo test --release --test it cli_real::`.
//!
//! A new test file goes here as a module (`mod name;` below), not as a new `tests/*.rs` binary.

#[path = "../common/mod.rs"]
mod common;

mod analyze_mse;
mod analyze_real;
mod analyze_trace;
mod analyze_utp;
mod builtin_tracker;
mod capture_real;
mod cli_basic;
mod cli_polish;
mod cli_real;
mod cli_signals;
mod create_real;
mod create_v2;
mod demo;
mod engine_robustness;
mod harness_selftest;
mod hostile_peers;
mod load;
mod magnet_real;
mod magnet_v2;
mod metainfo_download;
mod metainfo_oracle;
mod seed_real;
mod trace_real;
mod trace_tshark;
mod tracker_opentracker;
mod tutorial;
mod v2_download;
mod view_ladder;
mod view_live;
mod view_report;
