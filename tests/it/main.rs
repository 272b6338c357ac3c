//! Black-box tests of the `repro` binary: one test binary, one module per area.

mod support;

mod container;
mod dataset;
mod faults;
mod harness;
mod run;
