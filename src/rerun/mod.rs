//! Re-run targets (bash, Kubernetes Job, Slurm) rendered from a recorded run, and shell quoting.

pub mod bash;
pub mod k8s;
pub mod quote;
pub mod slurm;
