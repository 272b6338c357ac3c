//! repro: records exactly what a training run used (image digest, code commit, datasets, argv,
//! outcome) in a local SQLite database and turns any recorded run back into a pinned re-run script.

pub mod attest;
pub mod capture;
pub mod cli;
pub mod config;
pub mod error;
pub mod exec;
pub mod mlflow;
pub mod oci_artifact;
pub mod oci_layout;
pub mod ops;
pub mod output;
pub mod record;
pub mod sanitize;
pub mod script;
pub mod slurm;
pub mod store;
pub mod ui;
