//! The metrics hooks of `run` and `rerun`: before the child starts, a JSON-lines file per run
//! under the data directory (`REPRO_METRICS`, mode 0600) and `REPRO_RUN_ID`; after it ends, that
//! file and every `--metrics PATH` are read (as untrusted files: regular ones only, bounded) and
//! their points stored; what reaches the file after that is counted by the next run's [`sweep`].
//! Nothing here changes a run's status or exit code: every problem is a warning.

use std::path::{Path, PathBuf};

use crate::capture::metrics::live::Stamps;
use crate::capture::metrics::MetricPoint;
use crate::ops::Events;
use crate::store::Store;

/// The variable naming the run's id in the child.
pub const RUN_ID_VAR: &str = "REPRO_RUN_ID";
/// The variable naming the JSON-lines file the child may append metrics to.
pub const METRICS_VAR: &str = "REPRO_METRICS";

/// The directory of per-run metrics files of the database at `db`: `<db dir>/metrics`.
pub fn metrics_dir(db: &Path) -> PathBuf {
    db.parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join("metrics")
}

/// The `--metrics` paths of a run: the configuration's first, then the flags', without repeats.
pub fn paths(configured: &[String], flags: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = configured.iter().map(PathBuf::from).collect();
    for f in flags {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// The metrics files this process created and still reads at the end of their run, each
/// open with an exclusive `flock`: a file nobody holds belongs to a run that has ended (or whose
/// wrapper died), and `prepare` sweeps it. A process-wide list, so that `prepare` and `collect`
/// keep their signatures for every caller (`run`, `rerun`, Slurm).
static HELD: std::sync::Mutex<Vec<(PathBuf, std::fs::File)>> = std::sync::Mutex::new(Vec::new());

/// Creates the run's empty metrics file (0600), held locked until `collect`. `None` (with a
/// warning) when it cannot be created: the run still starts, with `REPRO_METRICS` unset. Before
/// that, files of ended runs left in the directory are swept (see [`sweep`]).
pub fn prepare(ev: &dyn Events, store: &Store, run_id: &str) -> Option<PathBuf> {
    if store.path() == Path::new(":memory:") {
        return None;
    }
    let dir = metrics_dir(store.path());
    sweep(ev, &dir);
    let path = dir.join(format!("{run_id}.jsonl"));
    let made = create_locked(&dir, run_id, &|| {});
    match made {
        Ok(file) => {
            let _ = crate::store::chmod(&path, 0o600);
            let path = path.canonicalize().unwrap_or(path);
            if let Ok(mut held) = HELD.lock() {
                held.push((path.clone(), file));
            }
            Some(path)
        }
        Err(e) => {
            ev.warn(&format!(
                "cannot create the metrics file {} ({e}); {METRICS_VAR} is not set for this run",
                path.display()
            ));
            None
        }
    }
}

/// Creates `DIR/RUN.jsonl` (0600) and locks it. Made under a name `sweep` passes over and
/// renamed into place once locked: another run's sweep must never find the file unlocked (it
/// would take it for a leftover and remove it). `before_lock` runs between creating and locking
/// (tests put a sweep there).
fn create_locked(
    dir: &Path,
    run_id: &str,
    before_lock: &dyn Fn(),
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let fresh = dir.join(format!("{run_id}{FRESH_SUFFIX}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)?;
    before_lock();
    lock(&file, false)?;
    std::fs::rename(&fresh, dir.join(format!("{run_id}.jsonl")))?;
    Ok(file)
}

/// The name a run's metrics file has until it is locked (see [`prepare`]).
const FRESH_SUFFIX: &str = ".jsonl.new";

/// A fresh file older than this was left by a wrapper that died between creating and renaming it.
const FRESH_LEFTOVER: std::time::Duration = std::time::Duration::from_secs(600);

/// `flock(LOCK_EX)`, without waiting when `try_only`: `Ok(false)` when another process holds it.
fn lock(file: &std::fs::File, try_only: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | if try_only { libc::LOCK_NB } else { 0 };
    // SAFETY: flock on a descriptor this function borrows; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if try_only && e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Metric lines in a file: non-blank lines (a writer without `O_APPEND` after the truncation at
/// the end of the run leaves a hole of NUL bytes before its line). Read a window at a time, as
/// the file is untrusted and may be large; `None` when it cannot be read.
fn count_lines(file: &Path) -> Option<usize> {
    let limit = crate::capture::metrics::MAX_FILE_BYTES;
    let mut r =
        crate::capture::untrusted::RegularReader::open(file, limit, "a metrics file").ok()?;
    let mut buf = Vec::with_capacity(crate::capture::metrics::WINDOW_BYTES);
    let (mut lines, mut in_line) = (0, false);
    while r
        .read_into(&mut buf, crate::capture::metrics::WINDOW_BYTES)
        .ok()?
        > 0
    {
        for b in &buf {
            if *b == b'\n' {
                lines += usize::from(in_line);
                in_line = false;
            } else if !b.is_ascii_whitespace() && *b != 0 {
                in_line = true;
            }
        }
        buf.clear();
    }
    Some(lines + usize::from(in_line))
}

/// Removes the metrics files of runs that have ended: after `collect` read a run's file it
/// empties it and keeps it (0600, the same inode), so that a process the job left running, which
/// appends after the run ended, writes there and not into a new world-readable file, and nothing
/// it wrote goes unmentioned. A file no process holds is such a leftover: an empty one is removed
/// quietly; one with lines is removed with a warning that counts them (they were not recorded).
/// Files of runs still going are held (`flock`) by their wrapper and left alone.
pub fn sweep(ev: &dyn Events, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_stale_fresh_file(&path) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(run_id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .map(str::to_string)
        else {
            continue;
        };
        let limit = crate::capture::metrics::MAX_FILE_BYTES;
        let opened =
            crate::capture::untrusted::open_regular(&path, limit, "a metrics file").map(|(f, _)| f);
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // A FIFO, device or huge file the job put in place of its metrics file.
                if std::fs::remove_file(&path).is_ok() {
                    ev.warn(&format!("metrics: {e}; removed it"));
                }
                continue;
            }
        };
        if !matches!(lock(&file, true), Ok(true)) {
            continue; // its run is still going
        }
        let lines = count_lines(&path).unwrap_or_default();
        if std::fs::remove_file(&path).is_ok() && lines > 0 {
            ev.warn(&format!(
                "metrics: {lines} line(s) reached {METRICS_VAR} of run {} after repro had read it at the end of the run (from a process the job left running?) and were not recorded; removed {}",
                crate::sanitize::escape(&run_id),
                path.display()
            ));
        }
    }
}

/// A file `prepare` created and never renamed (its wrapper died in between), long enough ago.
fn is_stale_fresh_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(FRESH_SUFFIX))
        && std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > FRESH_LEFTOVER)
}

/// The variables for the child: `REPRO_RUN_ID` and, when the file exists, `REPRO_METRICS`.
pub fn child_env(run_id: &str, file: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![(RUN_ID_VAR.to_string(), run_id.to_string())];
    if let Some(f) = file {
        env.push((METRICS_VAR.to_string(), f.to_string_lossy().into_owned()));
    }
    env
}

/// Reads the run's metrics file and the `--metrics` paths (relative ones against `cwd`) and
/// stores the points. Warnings only; the metrics file is removed once its points are stored.
/// JSON-lines files are streamed: read, parsed and stored a window of lines at a time in the
/// one transaction, so that memory stays bounded however many points the job reported.
pub fn collect(
    ev: &dyn Events,
    store: &mut Store,
    run_id: &str,
    file: Option<&Path>,
    paths: &[PathBuf],
    cwd: &Path,
) {
    collect_in_windows(
        ev,
        store,
        run_id,
        (file, None),
        paths,
        cwd,
        crate::capture::metrics::WINDOW_BYTES,
    );
}

/// [`collect`], a point of the run's metrics file written without `ts` getting the time the
/// live reader first saw its line (`stamps`, see [`LiveMetrics`]).
pub fn collect_stamped(
    ev: &dyn Events,
    store: &mut Store,
    run_id: &str,
    file: Option<&Path>,
    stamps: &Stamps,
    paths: &[PathBuf],
    cwd: &Path,
) {
    collect_in_windows(
        ev,
        store,
        run_id,
        (file, Some(stamps)),
        paths,
        cwd,
        crate::capture::metrics::WINDOW_BYTES,
    );
}

/// The live reader of the run's metrics file while the job runs (started only when the file
/// exists: a run without it starts no thread).
pub struct LiveMetrics {
    reader: Option<crate::capture::metrics::live::LiveReader>,
}

impl LiveMetrics {
    /// Starts reading `file` live; the times it notes are on the run's clock
    /// ([`crate::capture::host::now`], which tests may pin) advanced by the real time elapsed.
    pub fn start(file: Option<&Path>) -> LiveMetrics {
        let reader = file.map(|f| {
            let base = seconds(crate::capture::host::now());
            let t0 = std::time::Instant::now();
            crate::capture::metrics::live::start(f.to_path_buf(), move || {
                base + t0.elapsed().as_secs_f64()
            })
        });
        LiveMetrics { reader }
    }

    /// Stops the reader (at once) and gives what it saw.
    pub fn stop(self) -> Stamps {
        self.reader.map(|r| r.stop()).unwrap_or_default()
    }
}

/// `stamps` with the lines the live reader never saw (written in the last moments, or all at
/// once at exit) stamped `ended_at`, the run's end time, never its start.
pub fn with_end(mut stamps: Stamps, ended_at: &str) -> Stamps {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(ended_at) {
        stamps.push(u64::MAX, seconds(t.with_timezone(&chrono::Utc)));
    }
    stamps
}

/// Seconds since the epoch, with milliseconds.
fn seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// [`collect`] with JSON-lines files parsed `window` bytes at a time.
fn collect_in_windows(
    ev: &dyn Events,
    store: &mut Store,
    run_id: &str,
    (file, stamps): (Option<&Path>, Option<&Stamps>),
    paths: &[PathBuf],
    cwd: &Path,
    window: usize,
) {
    let mut sink = Sink {
        ingest: store.ingest_metrics(run_id),
        failed: None,
    };
    let mut warnings = Vec::new();
    if let Some(f) = file {
        // Read as an untrusted file: the job may have put a FIFO or a link to /dev/zero there.
        // An empty file (the job reported nothing) gives no points and no warnings.
        sink.begin_source();
        let read =
            crate::capture::metrics::stream_jsonl_file(f, METRICS_VAR, window, stamps, &mut |p| {
                sink.push(p)
            });
        sink.end_source(read.is_ok());
        match read {
            Ok(w) => warnings.extend(w),
            Err(e) => warnings.push(format!("{METRICS_VAR}: {e}; no metrics read")),
        }
    }
    for p in paths {
        sink.begin_source();
        let read =
            crate::capture::metrics::stream_path(&cwd.join(p), window, &mut |p| sink.push(p));
        sink.end_source(read.complete);
        warnings.extend(read.warnings);
    }
    for w in &warnings {
        ev.warn(&format!("metrics: {w}"));
    }
    let written = match sink.failed {
        Some(e) => Err(e),
        None => sink.ingest.finish(),
    };
    let stored = match written {
        Ok(w) => {
            if w.points > 0 {
                ev.debug(&format!(
                    "stored {} metric point(s) of {} key(s)",
                    w.points, w.keys
                ));
            }
            true
        }
        Err(e) => {
            ev.warn(&format!(
                "could not store the metrics of run {run_id}: {}",
                crate::error::report(e)
            ));
            false
        }
    };
    if let (true, Some(f)) = (stored, file) {
        release(f);
    }
}

/// Where streamed points go: the run's one metrics transaction, until a write fails (the rest
/// is still parsed, for its warnings, and nothing is stored).
struct Sink<'s> {
    ingest: crate::store::metrics::MetricsIngest<'s>,
    failed: Option<crate::store::StoreError>,
}

impl Sink<'_> {
    fn push(&mut self, points: Vec<MetricPoint>) {
        if self.failed.is_none() {
            if let Err(e) = self.ingest.push(&points) {
                self.failed = Some(e);
            }
        }
    }

    fn begin_source(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.ingest.begin_source() {
                self.failed = Some(e);
            }
        }
    }

    /// Keeps the source's points, or drops them (a file refused while it was read).
    fn end_source(&mut self, keep: bool) {
        if self.failed.is_none() {
            if let Err(e) = self.ingest.end_source(keep) {
                self.failed = Some(e);
            }
        }
    }
}

/// After the points of `f` are stored: the file this process created is emptied and kept (see
/// [`sweep`]), and its lock released; any other (the Slurm job's, or one the job put in place
/// of ours) is removed.
fn release(f: &Path) {
    use std::os::unix::fs::MetadataExt;
    let held = HELD.lock().ok().and_then(|mut held| {
        let i = held.iter().position(|(p, _)| p == f)?;
        Some(held.swap_remove(i).1)
    });
    let same_inode = |file: &std::fs::File| match (file.metadata(), std::fs::symlink_metadata(f)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    match held {
        Some(file) if same_inode(&file) => {
            if file.set_len(0).is_err() {
                let _ = std::fs::remove_file(f);
            }
        }
        _ => {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Collect;

    /// Runs starting at once: one run's sweep never takes another run's new file for a
    /// leftover (it did when the file was created unlocked under its final name, and the
    /// 32-concurrent-runs test lost a run's metrics file in a loaded CI run).
    #[test]
    fn a_sweep_never_removes_a_file_another_run_is_preparing() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics");
        let ev = Collect::default();
        const N: usize = 3;
        let mut held = Vec::new();
        for i in 0..N {
            let id = format!("01m9{i:022}");
            // Another run sweeps at the worst moment: created, not yet locked.
            let file = create_locked(&metrics, &id, &|| sweep(&ev, &metrics)).unwrap();
            assert!(
                metrics.join(format!("{id}.jsonl")).exists(),
                "run {i}: its metrics file was swept away"
            );
            held.push(file);
        }
        // Held files survive a sweep; a stale fresh file is removed, a new one is not.
        let ev = Collect::default();
        sweep(&ev, &metrics);
        let left = std::fs::read_dir(&metrics).unwrap().count();
        assert_eq!(left, N);
        let stale = metrics.join(format!("gone{FRESH_SUFFIX}"));
        std::fs::write(&stale, "").unwrap();
        let old = std::time::SystemTime::now() - FRESH_LEFTOVER * 2;
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let recent = metrics.join(format!("new{FRESH_SUFFIX}"));
        std::fs::write(&recent, "").unwrap();
        sweep(&ev, &metrics);
        assert!(!stale.exists() && recent.exists());
    }

    #[test]
    fn file_is_private_and_points_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("repro.db");
        let mut store = Store::open(&db).unwrap();
        let run = crate::script::sample_run();
        store.insert_run(&run).unwrap();
        let ev = Collect::default();
        let f = prepare(&ev, &store, &run.id).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(
            &f,
            "{\"step\": 1, \"acc\": 0.5}\n{\"step\": 2, \"acc\": 0.75}\nnot json\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("m.json"), "{\"val\": {\"loss\": 0.25}}").unwrap();
        collect(
            &ev,
            &mut store,
            &run.id,
            Some(&f),
            &[PathBuf::from("m.json"), PathBuf::from("missing.csv")],
            dir.path(),
        );
        let s = store.metric_summaries(&run.id).unwrap();
        let keys: Vec<_> = s.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["acc", "val.loss"]);
        assert_eq!(s[0].last, 0.75);
        assert_eq!(s[0].count, 2);
        let msgs = ev.0.borrow().join("\n");
        assert!(msgs.contains("missing.csv"), "{msgs}");
        assert!(msgs.contains("REPRO_METRICS"), "{msgs}");
        assert_eq!(
            std::fs::metadata(&f).unwrap().len(),
            0,
            "stored points leave an empty file, swept by the next run"
        );
    }

    #[test]
    fn lines_are_counted_across_windows_without_blanks_or_nul_holes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.jsonl");
        let mut text = b"{\"a\": 1}\n\n  \n\0\0\0{\"a\": 2}\n\0\0\n".to_vec();
        text.extend(b"{\"a\": 3}".repeat(700_000));
        text.extend(b"\n\t\n{\"a\": 4}");
        std::fs::write(&f, &text).unwrap();
        assert!(text.len() > crate::capture::metrics::WINDOW_BYTES);
        assert_eq!(count_lines(&f), Some(4));
        assert_eq!(count_lines(&dir.path().join("missing.jsonl")), None);
    }

    /// `collect` as it was before JSON-lines files were streamed: every file read whole, every
    /// point parsed, then one `insert_metrics`. The reference the streamed one must match.
    fn collect_whole(
        ev: &dyn Events,
        store: &mut Store,
        run_id: &str,
        file: &Path,
        paths: &[PathBuf],
        cwd: &Path,
    ) {
        use crate::capture::metrics::{parse_bytes, read_file, read_path, Format, Parsed};
        let mut parsed = Parsed::default();
        match read_file(file) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => parsed.extend(parse_bytes(Format::Jsonl, &bytes, METRICS_VAR)),
            Err(e) => parsed
                .warnings
                .push(format!("{METRICS_VAR}: {e}; no metrics read")),
        }
        for p in paths {
            parsed.extend(read_path(&cwd.join(p)));
        }
        for w in &parsed.warnings {
            ev.warn(&format!("metrics: {w}"));
        }
        if !parsed.points.is_empty() {
            store.insert_metrics(run_id, &parsed.points).unwrap();
        }
    }

    /// Streamed a window at a time, the run's metrics file and `--metrics` files give the same
    /// points, summaries and warnings (line numbers included, in the same order) as read whole,
    /// for windows much smaller than the files.
    #[test]
    fn streamed_collect_stores_what_the_whole_file_path_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut run_lines = String::new();
        for i in 0..3_000 {
            match i % 211 {
                5 => run_lines.push_str("not json\n"),
                6 => run_lines.push_str(&format!(
                    "{{\"step\": {i}, \"loss\": \"high\", \"ts\": \"later\"}}\n"
                )),
                7 => run_lines.push_str(&format!(
                    "{{\"step\": {i}, \"loss\": NaN, \"big\": 1e999}}\r\n"
                )),
                _ => run_lines.push_str(&format!(
                    "{{\"step\": {}, \"loss\": {}, \"val\": {{\"acc\": {}}}, \"ts\": {}}}\n",
                    (i * 37) % 2_999,
                    1.0 / (1 + i) as f64,
                    i as f64 / 3e3,
                    1.7e9 + i as f64
                )),
            }
        }
        run_lines.push_str("{\"loss\": 0.125}"); // no step, no final newline
        let extra: String = (0..500)
            .map(|i| {
                format!(
                    "{{\"step\": {}, \"loss\": {i}.5, \"lr\": 0.1}}\n",
                    3_000 + i % 7
                )
            })
            .chain(["[1, 2]\n".to_string()])
            .collect();
        std::fs::write(dir.path().join("extra.jsonl"), extra).unwrap();
        std::fs::write(dir.path().join("m.json"), "{\"val\": {\"loss\": 0.25}}").unwrap();
        let fifo = dir.path().join("f.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let paths = [
            PathBuf::from("extra.jsonl"),
            PathBuf::from("m.json"),
            PathBuf::from("missing.csv"),
            PathBuf::from("f.jsonl"),
        ];
        let f = dir.path().join("run.jsonl");
        let run = crate::script::sample_run();
        type Stored = (
            Vec<String>,
            Vec<(String, Option<i64>, u64, Option<u64>)>,
            String,
        );
        let stored = |how: &dyn Fn(&Collect, &mut Store)| -> Stored {
            let db = tempfile::tempdir().unwrap();
            let mut store = Store::open(&db.path().join("repro.db")).unwrap();
            store.insert_run(&run).unwrap();
            std::fs::write(&f, &run_lines).unwrap();
            let ev = Collect::default();
            how(&ev, &mut store);
            let points = store
                .metric_points(&run.id)
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p.key.to_string(),
                        p.step,
                        p.value.to_bits(),
                        p.time.map(f64::to_bits),
                    )
                })
                .collect();
            let summaries =
                crate::record::metrics::summary_json(&store.metric_summaries(&run.id).unwrap());
            let messages = ev.0.borrow().clone();
            (messages, points, summaries.to_string())
        };
        let whole = stored(&|ev, store| collect_whole(ev, store, &run.id, &f, &paths, dir.path()));
        assert!(whole.0.len() >= 12, "{:?}", whole.0);
        assert!(
            whole.0.iter().any(|m| m.contains("line 1483")),
            "{:?}",
            whole.0
        );
        assert_eq!(whole.1.len(), 2 * 2_955 + 15 + 1 + 1_000 + 1);
        for window in [100, 4_096, crate::capture::metrics::WINDOW_BYTES] {
            let streamed = stored(&|ev, store| {
                collect_in_windows(
                    ev,
                    store,
                    &run.id,
                    (Some(&f), None),
                    &paths,
                    dir.path(),
                    window,
                )
            });
            assert_eq!(streamed.0, whole.0, "window {window}");
            assert_eq!(streamed.1, whole.1, "window {window}");
            assert_eq!(streamed.2, whole.2, "window {window}");
            assert_eq!(
                std::fs::metadata(&f).map(|m| m.len()).ok(),
                None,
                "stored: not ours, removed"
            );
        }
    }
}
