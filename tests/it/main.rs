//! Black-box tests of the `repro` binary: one test binary, one module per area.

mod config;
mod conformance_reference;
mod container;
mod conventions;
mod dataset;
mod diff;
mod doctor;
mod faults;
mod harness;
mod metrics;
mod query;
mod registry;
mod rerun;
mod rerun_render;
mod run;
mod script_e2e;
mod support;
mod transfer;
