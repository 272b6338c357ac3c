//! Operations called by the CLI: they take a request and return typed results; they never print.

pub mod plot;
