//! A run's environment snapshot (docs/environment.md), put together from `python_env`,
//! `system` and `gpu`. Nothing here fails: a fact that cannot be read is left out.

use std::ffi::OsString;
use std::path::Path;

use crate::record::environment::Environment;

/// What to capture.
pub struct Request<'a> {
    /// Container mode: only the host part (OS, kernel, CPU, memory, GPUs and driver); the image
    /// digest pins the rest.
    pub host_only: bool,
    /// Where lock files are looked for (the repository root, else the working directory).
    pub root: Option<&'a Path>,
    /// The allow-listed variable names (`record_env`).
    pub vars: &'a [String],
    /// The child's variables (repro's own with the run's `--env` on top).
    pub var: &'a dyn Fn(&str) -> Option<OsString>,
}

/// Captures the snapshot.
pub fn capture(req: &Request) -> Environment {
    let mut env = Environment {
        os: super::system::os(),
        cpu: super::system::cpu(),
        memory_bytes: super::system::memory_bytes(),
        gpus: super::gpu::gpus(),
        ..Environment::default()
    };
    if !req.host_only {
        env.python = super::python_env::capture(req.var);
        env.lockfiles = req.root.map(super::system::lock_files).unwrap_or_default();
        env.vars = super::system::vars(req.vars, req.var);
    }
    env
}
