//! Capture of provenance facts: code (git), image (reference, digest, registry, engine), datasets, host.

pub mod argv_params;
pub mod code;
pub mod dataset;
pub mod env;
pub mod environment;
pub mod gpu;
pub mod host;
pub mod image;
pub mod metrics;
pub mod python_env;
pub mod scheduler;
pub mod sysmetrics;
pub mod system;
pub mod untrusted;
