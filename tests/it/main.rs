//! Black-box tests of the `repro` binary: one test binary, one module per area.

mod conformance_reference;
mod container;
mod dataset;
mod diff;
mod faults;
mod harness;
mod query;
mod registry;
mod rerun;
mod rerun_render;
mod run;
mod script_e2e;
mod support;
mod transfer;
