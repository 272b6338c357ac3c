//! Black-box tests of the `repro` binary: one test binary, one module per area.

mod support;

mod conformance_reference;
mod container;
mod faults;
mod harness;
mod registry;
mod run;
