//! The environment snapshot of a run being started (docs/environment.md): captured from the
//! child's variables and the repository, stored beside the run. A failure never stops the run.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::ops::run::Execution;
use crate::ops::Events;
use crate::record::environment::Environment;
use crate::record::{ExecMode, Run};
use crate::store::Store;

/// The environment the run `run` would run in now, executed as `x` says.
pub fn current(run: &Run, x: &Execution) -> Environment {
    let vars = x.record_env.clone().unwrap_or_else(|| {
        crate::capture::system::DEFAULT_VARS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    // The child gets repro's variables with the run's own on top.
    let var = |k: &str| -> Option<OsString> {
        x.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| OsString::from(v))
            .or_else(|| std::env::var_os(k))
    };
    // A re-run's checkout (`mount_src`) holds the recorded lock files, not the recorded path.
    let root = x
        .mount_src
        .clone()
        .or_else(|| run.code.as_ref().map(|c| PathBuf::from(&c.repo_root)))
        .unwrap_or_else(|| x.cwd.clone());
    crate::capture::environment::capture(&crate::capture::environment::Request {
        host_only: run.exec.mode == ExecMode::Container,
        root: Some(&root),
        vars: &vars,
        var: &var,
    })
}

/// Captures and stores the environment of `run` (already inserted); a failure is a warning.
pub fn record(ev: &dyn Events, store: &mut Store, run: &Run, x: &Execution) {
    let env = current(run, x);
    if let Err(e) = store.record_environment(&run.id, &env) {
        ev.warn(&format!(
            "cannot record the environment of run {}: {}",
            run.id,
            crate::error::report(e)
        ));
    }
}
