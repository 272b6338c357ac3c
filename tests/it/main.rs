//! Black-box tests of the `repro` binary: one test binary, one module per area.

mod support;

mod container;
mod faults;
mod harness;
mod run;
