//! Black-box tests of the `repro` binary: one test binary, one module per area.

mod architecture;
mod attest;
mod audit;
mod config;
mod conformance_reference;
mod container;
mod conventions;
mod dataset;
mod diff;
mod doctor;
mod durability;
mod escapes;
mod faults;
mod harness;
mod k8s;
mod metrics;
mod mlflow;
mod query;
mod registry;
mod rerun;
mod rerun_render;
mod run;
mod script_e2e;
mod slurm;
mod support;
mod transfer;
