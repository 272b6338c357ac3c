//! Metrics a job reports: `REPRO_METRICS` JSON lines, JSON / YAML / CSV / TSV files and DVCLive
//! directories, parsed into points (key, step, value, time). Reading never fails a run: every
//! problem (a missing file, a malformed line, a non-numeric value) becomes a warning.

mod dvclive;
mod files;
mod jsonl;
pub mod live;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

pub use crate::record::metrics::MetricPoint;

pub use dvclive::read_dvclive;
pub use files::{parse_delimited, parse_json, parse_yaml};
pub use jsonl::parse_jsonl;

/// Points read from one source, in the order they were reported, and the warnings to show.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub points: Vec<MetricPoint>,
    pub warnings: Vec<String>,
}

impl Parsed {
    /// Appends another source's points and warnings.
    pub fn extend(&mut self, other: Parsed) {
        self.points.extend(other.points);
        self.warnings.extend(other.warnings);
    }
}

/// The formats `--metrics PATH` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`REPRO_METRICS`, `.jsonl`, `.ndjson`).
    Jsonl,
    /// One JSON object (`.json`).
    Json,
    /// One YAML mapping (`.yaml`, `.yml`).
    Yaml,
    /// Comma-separated with a header row (`.csv`).
    Csv,
    /// Tab-separated with a header row (`.tsv`).
    Tsv,
    /// A directory written by DVCLive (`metrics.json`, `plots/metrics/**.tsv`).
    Dvclive,
}

impl Format {
    /// The format of `path`: a directory is DVCLive output, a file goes by its extension.
    pub fn detect(path: &Path) -> Option<Format> {
        if path.is_dir() {
            return Some(Format::Dvclive);
        }
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "jsonl" | "ndjson" => Format::Jsonl,
            "json" => Format::Json,
            "yaml" | "yml" => Format::Yaml,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            _ => return None,
        })
    }
}

/// Reads a metrics file or DVCLive directory. Never fails: a missing, unreadable or malformed
/// source yields warnings (and whatever points could be read).
pub fn read_path(path: &Path) -> Parsed {
    let name = path.display().to_string();
    let Some(format) = Format::detect(path) else {
        if !path.exists() {
            return warn_only(format!(
                "{name}: no such file or directory; no metrics read"
            ));
        }
        return warn_only(format!(
            "{name}: unknown metrics format; name it .jsonl, .json, .yaml, .csv or .tsv, or give a DVCLive directory"
        ));
    };
    if format == Format::Dvclive {
        return read_dvclive(path);
    }
    let bytes = match read_file(path) {
        Ok(b) => b,
        Err(e) => return warn_only(format!("{e}; no metrics read")),
    };
    parse_bytes(format, &bytes, &name)
}

/// The most a metrics file may hold: read whole, it is bounded (a million JSON-lines points
/// is about 30 MB).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Reads one metrics file as an untrusted file: a regular file of at most [`MAX_FILE_BYTES`]
/// (a FIFO or a symlink to `/dev/zero`, even one committed to a repository whose
/// `.repro.toml` names it, is refused instead of blocking or filling memory).
pub fn read_file(path: &Path) -> Result<Vec<u8>, crate::capture::untrusted::UntrustedFileError> {
    crate::capture::untrusted::read_regular(path, MAX_FILE_BYTES, "a metrics file")
}

/// About how many bytes of whole lines of a JSON-lines file are parsed at a time when it is
/// streamed ([`stream_jsonl_file`]): the bytes and points held at once stay a few MiB (plus the
/// line being read), however long the file.
pub const WINDOW_BYTES: usize = 4 << 20;

/// Reads a JSON-lines metrics file as an untrusted file (as [`read_file`]: a regular file of at
/// most [`MAX_FILE_BYTES`]) a window of about `window` bytes of whole lines at a time, handing
/// each window's points to `sink` in file order (`source` names the file in warnings). The
/// points and warnings are those of [`parse_bytes`] on the whole file. On an error (a file that
/// is not a regular one or too large, a read that fails, a file that grows past the limit while
/// it is read) the file is not read: points already handed over must be dropped by the caller.
/// A line without `ts` gets the time `stamps` (the live reader's) says it was first seen.
pub fn stream_jsonl_file(
    path: &Path,
    source: &str,
    window: usize,
    stamps: Option<&live::Stamps>,
    sink: &mut dyn FnMut(Vec<MetricPoint>),
) -> Result<Vec<String>, crate::capture::untrusted::UntrustedFileError> {
    let mut file =
        crate::capture::untrusted::RegularReader::open(path, MAX_FILE_BYTES, "a metrics file")?;
    let threads = jsonl::threads_for(file.len());
    jsonl::parse_jsonl_windows(
        |buf, max| file.read_into(buf, max),
        source,
        window,
        threads,
        stamps,
        sink,
    )
}

/// What [`stream_path`] read from one source.
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    pub warnings: Vec<String>,
    /// False when the source was refused after some of its points went to the sink (it grew
    /// past the size limit, or a read failed): the caller drops them, as [`read_path`] would
    /// have given none.
    pub complete: bool,
}

/// [`read_path`], with a JSON-lines file streamed ([`stream_jsonl_file`]): its points go to
/// `sink` a window at a time; every other format is read whole (one call of `sink`). The points
/// and warnings are those of [`read_path`].
pub fn stream_path(path: &Path, window: usize, sink: &mut dyn FnMut(Vec<MetricPoint>)) -> Streamed {
    if Format::detect(path) == Some(Format::Jsonl) {
        let name = path.display().to_string();
        return match stream_jsonl_file(path, &name, window, None, sink) {
            Ok(warnings) => Streamed {
                warnings,
                complete: true,
            },
            Err(e) => Streamed {
                warnings: vec![format!("{e}; no metrics read")],
                complete: false,
            },
        };
    }
    let parsed = read_path(path);
    if !parsed.points.is_empty() {
        sink(parsed.points);
    }
    Streamed {
        warnings: parsed.warnings,
        complete: true,
    }
}

/// Parses the contents of one file in `format` (`source` names it in warnings).
pub fn parse_bytes(format: Format, bytes: &[u8], source: &str) -> Parsed {
    match format {
        Format::Jsonl => parse_jsonl(bytes, source),
        Format::Json => parse_json(bytes, source),
        Format::Yaml => parse_yaml(bytes, source),
        Format::Csv => parse_delimited(bytes, b',', source),
        Format::Tsv => parse_delimited(bytes, b'\t', source),
        Format::Dvclive => warn_only(format!("{source}: a DVCLive source must be a directory")),
    }
}

fn warn_only(w: String) -> Parsed {
    Parsed {
        points: Vec::new(),
        warnings: vec![w],
    }
}

/// Shares one `Arc<str>` per distinct key so a million points do not mean a million strings.
#[derive(Default)]
pub(crate) struct Interner {
    map: HashMap<Box<str>, Arc<str>>,
}

impl Interner {
    pub(crate) fn get(&mut self, key: &str) -> Arc<str> {
        if let Some(k) = self.map.get(key) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(key);
        self.map.insert(key.into(), k.clone());
        k
    }
}

/// Collects the keys whose values were not numbers (or beyond a 64-bit float), and the times
/// that were not times, for one warning of each kind per source.
#[derive(Default)]
pub(crate) struct Skipped {
    keys: BTreeSet<String>,
    out_of_range: BTreeSet<String>,
    bad_times: usize,
    first_bad_time: Option<String>,
}

impl Skipped {
    pub(crate) fn add(&mut self, key: &str) {
        if !self.keys.contains(key) {
            self.keys.insert(key.to_string());
        }
    }

    /// A value too large for a 64-bit float (`1e400`): skipped, the line's other values kept.
    pub(crate) fn add_out_of_range(&mut self, key: &str) {
        if !self.out_of_range.contains(key) {
            self.out_of_range.insert(key.to_string());
        }
    }

    /// A time that is not one (`"yesterday"`, `1e30`, before 1970): the point is kept without it.
    pub(crate) fn add_bad_time(&mut self, shown: impl FnOnce() -> String) {
        self.bad_times += 1;
        if self.first_bad_time.is_none() {
            self.first_bad_time = Some(shown());
        }
    }

    /// A value that is not a metric: beyond a 64-bit float, or not a number at all.
    pub(crate) fn reject(&mut self, key: &str, v: &jsonl::Val<'_>) {
        if v.is_overflow() {
            self.add_out_of_range(key);
        } else {
            self.add(key);
        }
    }

    pub(crate) fn merge(&mut self, other: Skipped) {
        self.keys.extend(other.keys);
        self.out_of_range.extend(other.out_of_range);
        self.bad_times += other.bad_times;
        if self.first_bad_time.is_none() {
            self.first_bad_time = other.first_bad_time;
        }
    }

    pub(crate) fn warnings(&self, source: &str) -> Vec<String> {
        let list = |keys: &BTreeSet<String>| {
            // Keys come from the job: shown escaped, an empty one as "".
            let names: Vec<String> = keys
                .iter()
                .map(|k| match k.as_str() {
                    "" => "\"\"".to_string(),
                    k => crate::sanitize::escape(k).into_owned(),
                })
                .collect();
            format!(
                "{}: {}",
                if names.len() == 1 { "key" } else { "keys" },
                names.join(", ")
            )
        };
        let mut out = Vec::new();
        if !self.keys.is_empty() {
            out.push(format!(
                "{source}: ignored non-numeric values of {} (metrics must be numbers)",
                list(&self.keys)
            ));
        }
        if !self.out_of_range.is_empty() {
            out.push(format!(
                "{source}: ignored values of {} beyond the range of a 64-bit float (about ±1.8e308); the other values of those lines are kept",
                list(&self.out_of_range)
            ));
        }
        if self.bad_times > 0 {
            out.push(format!(
                "{source}: {} time(s) are not a time ({}; a time is seconds since 1970 or an RFC 3339 time, up to the year 9999): those points are kept without a time",
                self.bad_times,
                crate::sanitize::escape(self.first_bad_time.as_deref().unwrap_or("?"))
            ));
        }
        out
    }
}

/// Line-numbered warnings for malformed lines, at most `MAX_LINE_WARNINGS` of them and a count.
pub(crate) struct LineWarnings {
    source: String,
    shown: Vec<String>,
    more: usize,
}

const MAX_LINE_WARNINGS: usize = 10;

impl LineWarnings {
    pub(crate) fn new(source: &str) -> Self {
        LineWarnings {
            source: source.to_string(),
            shown: Vec::new(),
            more: 0,
        }
    }

    pub(crate) fn add(&mut self, line: usize, problem: impl std::fmt::Display) {
        if self.shown.len() < MAX_LINE_WARNINGS {
            self.shown.push(format!(
                "{}: line {line}: {problem}; line skipped",
                self.source
            ));
        } else {
            self.more += 1;
        }
    }

    pub(crate) fn finish(self, out: &mut Vec<String>) {
        out.extend(self.shown);
        if self.more > 0 {
            out.push(format!(
                "{}: {} more malformed lines skipped",
                self.source, self.more
            ));
        }
    }
}

/// A string that stands for a non-finite number: `nan`, `inf`, `-inf`, `infinity` (any case),
/// as Python's `json.dumps`, DVCLive and YAML write them.
pub(crate) fn non_finite(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = match body.to_ascii_lowercase().as_str() {
        "nan" | ".nan" => f64::NAN,
        "inf" | "infinity" | ".inf" => f64::INFINITY,
        _ => return None,
    };
    Some(if neg { -v } else { v })
}

/// A number written in a text cell (CSV, TSV): decimal, exponent, or a non-finite word.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if let Some(v) = non_finite(t) {
        return Some(v);
    }
    // `f64::from_str` also takes "infinity" and "nan" (handled above) but nothing like "1,5";
    // it turns "1e400" into infinity, which the cell does not say: not a metric.
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A step: an integer, or a float with no fractional part.
pub(crate) fn as_step(v: f64) -> Option<i64> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        Some(v as i64)
    } else {
        None
    }
}

/// A timestamp in seconds since the epoch: a number (seconds, or milliseconds when larger than
/// 1e11, as DVCLive writes them) or an RFC 3339 string. Only times RFC 3339 can write (1970 to
/// the year 9999, [`crate::record::metrics::valid_time`]) are times: an export of the run must
/// import again.
pub(crate) fn as_time_number(v: f64) -> Option<f64> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(if v > 1.0e11 { v / 1000.0 } else { v }).filter(|t| crate::record::metrics::valid_time(*t))
}

pub(crate) fn as_time_str(s: &str) -> Option<f64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        let secs = t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9;
        return Some(secs).filter(|t| crate::record::metrics::valid_time(*t));
    }
    s.trim().parse::<f64>().ok().and_then(as_time_number)
}

#[cfg(test)]
mod tests;
