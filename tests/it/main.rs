//! Black-box and integration tests: one test binary, one module per area.

mod conformance_reference;
