//! Black-box and library integration tests: one binary, one module per area.

mod dataset;
