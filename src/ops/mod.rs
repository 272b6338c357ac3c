//! The operations (`run`, `rerun`, `verify`, `diff`) behind the CLI: each takes a typed request
//! and an event sink and returns a typed result. They never print; the CLI renders.

pub mod archive;
pub mod attest;
pub mod audit;
pub mod channels;
pub mod dataset;
pub mod diff;
pub mod doctor;
pub mod du;
pub mod engine_failure;
pub mod env_drift;
pub mod environment;
pub mod follow;
pub mod gc;
pub mod get;
pub mod image;
pub mod images;
pub mod ls;
pub mod metric_keys;
pub mod metrics;
pub mod mlflow;
pub mod output_diff;
pub mod outputs;
pub mod parallel;
pub mod plot;
pub mod pool;
pub mod promote;
pub mod query;
pub mod recreate_env;
pub mod repeat;
pub mod rerun;
pub mod run;
pub mod show;
pub mod slurm_rerun;
pub mod store_verify;
pub mod sweep;
pub mod sweep_slurm;
pub mod sys_metrics;
pub mod verify;
pub mod which;

/// Where an operation reports status lines, warnings and debug detail while it works.
pub trait Events {
    /// A status line (`--quiet` silences it).
    fn status(&self, msg: &str);
    /// A warning (always shown).
    fn warn(&self, msg: &str);
    /// An error that does not end the operation (always shown).
    fn error(&self, msg: &str);
    /// Detail for `--verbose`.
    fn debug(&self, _msg: &str) {}
}

/// An event sink that keeps everything, for tests and callers that render later.
#[derive(Debug, Default)]
pub struct Collect(pub std::cell::RefCell<Vec<String>>);

impl Events for Collect {
    fn status(&self, msg: &str) {
        self.0.borrow_mut().push(msg.to_string());
    }
    fn warn(&self, msg: &str) {
        self.0.borrow_mut().push(format!("warning: {msg}"));
    }
    fn error(&self, msg: &str) {
        self.0.borrow_mut().push(msg.to_string());
    }
}
