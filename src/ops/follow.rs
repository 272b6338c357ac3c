//! `show --follow`: the metric points of a run as its job writes them. The job appends to its
//! `REPRO_METRICS` file (`<data dir>/metrics/<run>.jsonl`, [`crate::ops::metrics`]) and the
//! wrapper ingests it only when the run ends, so a follower in any process reads that file: each
//! complete line once, as it appears, until the stored run is no longer running (ended, or its
//! wrapper `lost`), or until it is told to stop (Ctrl-C).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::capture::metrics::parse_jsonl;
use crate::record::metrics::MetricPoint;
use crate::record::Status;
use crate::store::liveness::{liveness, Liveness};
use crate::store::Store;

/// How often the file and the run's status are looked at.
pub const POLL: Duration = Duration::from_millis(100);

/// At most this much of the file is read per look (the rest at the next one).
const READ_CAP: u64 = 4 << 20;

/// One point as the follower saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub point: MetricPoint,
    /// When the follower read it (seconds since the epoch); the point's own `ts` is in
    /// `point.time` when the job gave one.
    pub seen: f64,
}

/// Why following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEnd {
    /// The run is no longer running: its status now.
    Ended(Status),
    /// The stop flag was raised (Ctrl-C) or the sink asked to stop (a closed pipe).
    Stopped,
}

/// Reads new complete lines from a growing file.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    /// The complete lines appended since the last call (none while the file does not exist).
    fn read_new(&mut self) -> Vec<u8> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated or replaced: start over.
            self.offset = 0;
        }
        if len == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if (&mut f).take(READ_CAP).read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        buf.truncate(end + 1);
        self.offset += buf.len() as u64;
        buf
    }
}

/// The metric summaries of a running run so far, from its metrics file (the last 4 MiB of it:
/// the newest points; whole lines only): what `ls` shows for it before the end-of-run ingest
/// stores them. Empty when the file is absent or unreadable.
pub fn live_summaries(store: &Store, run_id: &str) -> Vec<crate::record::metrics::MetricSummary> {
    let path = metrics_file(store, run_id);
    let Ok(mut f) = std::fs::File::open(&path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(READ_CAP);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err()
        || (&mut f).take(READ_CAP).read_to_end(&mut buf).is_err()
    {
        return Vec::new();
    }
    // From the middle of the file: skip the partial first line; never the unfinished last one.
    let from = if start > 0 {
        buf.iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1)
    } else {
        0
    };
    let to = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if from >= to {
        return Vec::new();
    }
    let parsed = parse_jsonl(&buf[from..to], "REPRO_METRICS");
    crate::record::metrics::summaries_of(&parsed.points)
}

/// The metrics file a run's job appends to.
pub fn metrics_file(store: &Store, run_id: &str) -> PathBuf {
    crate::ops::metrics::metrics_dir(store.path()).join(format!("{run_id}.jsonl"))
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Whether the stored run has ended (a wrapper gone from this host counts as ended: `lost`).
fn ended(store: &Store, id: &str) -> Result<Option<Status>, crate::store::StoreError> {
    let run = store.get_run(id)?;
    Ok(match (run.status, liveness(&run)) {
        (Status::Running, Liveness::Lost) => Some(Status::Lost),
        (Status::Running, _) => None,
        (s, _) => Some(s),
    })
}

/// Follows run `id`: hands every point of its metrics file to `sink` (those already written
/// first), then each new one as it is written, until the run ends (then the stored points not
/// handed over yet, per key), `stop` is raised, or `sink` returns `false`. For a run that has already ended it hands
/// over the stored points and returns at once.
pub fn follow(
    store: &Store,
    id: &str,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(&Seen) -> bool,
) -> Result<FollowEnd, crate::store::StoreError> {
    if let Some(status) = ended(store, id)? {
        for s in stored(store, id)? {
            if !sink(&s) {
                return Ok(FollowEnd::Stopped);
            }
        }
        return Ok(FollowEnd::Ended(status));
    }
    let mut tail = Tail {
        path: metrics_file(store, id),
        offset: 0,
    };
    // Points handed over per key: at the end, the stored ones past these are the rest.
    let mut handed: HashMap<String, usize> = HashMap::new();
    loop {
        // The status first: lines written before the run ended are still read below.
        let end = ended(store, id)?;
        let bytes = tail.read_new();
        if !bytes.is_empty() {
            let seen = now();
            for point in parse_jsonl(&bytes, "REPRO_METRICS").points {
                *handed.entry(point.key.to_string()).or_default() += 1;
                if !sink(&Seen { point, seen }) {
                    return Ok(FollowEnd::Stopped);
                }
            }
        }
        if let Some(status) = end {
            // The wrapper empties the file once it has stored the points: what was written
            // after the last read (and any `--metrics` file) is in the store now.
            let seen = now();
            for mut s in stored(store, id)? {
                let n = handed.entry(s.point.key.to_string()).or_default();
                if *n > 0 {
                    *n -= 1;
                    continue;
                }
                s.seen = seen;
                if !sink(&s) {
                    return Ok(FollowEnd::Stopped);
                }
            }
            return Ok(FollowEnd::Ended(status));
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(FollowEnd::Stopped);
        }
        sleep_unless(stop, POLL);
    }
}

/// Sleeps `d`, waking early when `stop` is raised.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(10);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

/// The stored points of an ended run, by key, in the order reported.
fn stored(store: &Store, id: &str) -> Result<Vec<Seen>, crate::store::StoreError> {
    let mut out = Vec::new();
    for m in store.metric_summaries(id)? {
        let key: std::sync::Arc<str> = m.key.as_str().into();
        for p in store.metric_history(id, &m.key)? {
            out.push(Seen {
                point: MetricPoint {
                    key: key.clone(),
                    step: p.step,
                    value: p.value,
                    time: p.time,
                },
                seen: p.time.unwrap_or(f64::NAN),
            });
        }
    }
    Ok(out)
}

/// Raised by SIGINT once [`stop_on_sigint`] ran: `show --follow` ends on Ctrl-C with exit 0
/// instead of being killed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT raise the returned flag instead of ending the process.
pub fn stop_on_sigint() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
    &INTERRUPTED
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_gives_each_complete_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut t = Tail {
            path: path.clone(),
            offset: 0,
        };
        assert!(t.read_new().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"{\"a\": 1}\n{\"a\": 2").unwrap();
        assert_eq!(t.read_new(), b"{\"a\": 1}\n");
        assert!(t.read_new().is_empty(), "a partial line waits");
        f.write_all(b"}\n").unwrap();
        assert_eq!(t.read_new(), b"{\"a\": 2}\n");
        std::fs::write(&path, b"{\"b\": 1}\n").unwrap();
        assert_eq!(
            t.read_new(),
            b"{\"b\": 1}\n",
            "a truncated file starts over"
        );
    }
}
