//! Whether a stored `running` run is still going: decided here, when rows are read, so that
//! renderers and commands see a final status (`lost`) or an honest "cannot tell" (`running?`)
//! without reading `/proc` themselves.

use std::sync::OnceLock;

use crate::capture::host;
use crate::record::{Run, Status};

/// What this host can tell about a stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The stored status is final, or the wrapper is alive here.
    AsStored,
    /// The wrapper is gone (same host, boot and pid namespace: process gone or pid reused; or
    /// the host rebooted).
    Lost,
    /// Cannot be decided from here (another host, or another pid namespace): shown `running?`.
    Undecided(String),
}

struct Here {
    host: String,
    boot_id: Option<String>,
    pid_ns: Option<u64>,
}

fn here() -> &'static Here {
    static HERE: OnceLock<Here> = OnceLock::new();
    HERE.get_or_init(|| Here {
        host: host::hostname(),
        boot_id: host::boot_id(),
        pid_ns: host::pid_namespace(),
    })
}

/// Checks a run's liveness from this process.
pub fn liveness(run: &Run) -> Liveness {
    if run.status != Status::Running {
        return Liveness::AsStored;
    }
    let here = here();
    if run.host != here.host {
        return Liveness::Undecided(format!("on {}", run.host));
    }
    if let (Some(recorded), Some(now)) = (&run.boot_id, &here.boot_id) {
        if recorded != now {
            return Liveness::Lost;
        }
    }
    let Some(pid) = run.pid.and_then(|p| u32::try_from(p).ok()) else {
        return Liveness::AsStored;
    };
    // A wrapper in another pid namespace (a container sharing the database) is invisible here:
    // its pid means nothing in ours. Rows written before namespaces were recorded (no pid_ns)
    // keep the older rule.
    match (run.pid_ns, here.pid_ns) {
        (Some(theirs), Some(ours)) if theirs != ours => {
            return Liveness::Undecided("in another pid namespace".into())
        }
        (Some(_), None) => return Liveness::Undecided("pid namespace unknown here".into()),
        _ => {}
    }
    match host::process_start(pid) {
        None => Liveness::Lost,
        Some(start) => match run.pid_start {
            Some(recorded) if recorded != start => Liveness::Lost,
            _ => Liveness::AsStored,
        },
    }
}

/// Applies `liveness` to a run just read: a `running` row whose wrapper is gone becomes `lost`.
pub(super) fn apply(run: &mut Run) {
    if liveness(run) == Liveness::Lost {
        run.status = Status::Lost;
    }
}

/// For a run read from the store and shown `running`: why its liveness cannot be decided here
/// (`on HOST`, `in another pid namespace`), or `None` when it is known to be running.
pub fn undecided(run: &Run) -> Option<String> {
    match liveness(run) {
        Liveness::Undecided(why) => Some(why),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;

    fn local(pid: u32) -> Run {
        let mut r = sample_run("01jd3k0000000000000000000a");
        r.host = host::hostname();
        r.boot_id = host::boot_id();
        r.pid = Some(pid as i64);
        r.pid_start = host::process_start(pid);
        r.pid_ns = host::pid_namespace();
        r
    }

    #[test]
    fn own_wrapper_is_alive_and_a_gone_one_is_lost() {
        assert_eq!(liveness(&local(std::process::id())), Liveness::AsStored);
        let mut gone = local(std::process::id());
        gone.pid = Some(i64::from(u32::MAX - 1));
        assert_eq!(liveness(&gone), Liveness::Lost);
        let mut reused = local(std::process::id());
        reused.pid_start = Some(reused.pid_start.unwrap() + 1);
        assert_eq!(liveness(&reused), Liveness::Lost);
    }

    #[test]
    fn another_pid_namespace_or_host_is_undecided_never_lost() {
        let mut other = local(std::process::id());
        other.pid = Some(i64::from(u32::MAX - 1));
        other.pid_ns = Some(host::pid_namespace().unwrap() + 1);
        assert_eq!(
            liveness(&other),
            Liveness::Undecided("in another pid namespace".into())
        );
        let mut elsewhere = local(std::process::id());
        elsewhere.host = "elsewhere".into();
        assert_eq!(undecided(&elsewhere).as_deref(), Some("on elsewhere"));
        let mut finished = other.clone();
        finished.status = Status::Succeeded;
        assert_eq!(liveness(&finished), Liveness::AsStored);
    }
}
