//! Image references, digests, and how a reference is resolved to the digest that runs.

pub mod digest;
pub mod engine;
pub mod reference;
pub mod registry;
