//! Operations called by the CLI (and by other front ends): they take a request and an event
//! sink and return typed results; they never print.

pub mod mlflow;
