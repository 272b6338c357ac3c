//! Black-box tests: one binary, one module per area.

mod rerun_render;
