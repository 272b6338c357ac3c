//! The operations behind the CLI: each takes a typed request and returns a typed result; they
//! never print, the CLI renders.

pub mod archive;
pub mod attest;
pub mod audit;
pub mod slurm;
