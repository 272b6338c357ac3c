//! JSON lines (`REPRO_METRICS`): one object per line, `step` and `ts` optional, every other
//! number a metric. Also the JSON value model shared with `.json` files.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::live::Stamps;
use super::{
    as_step, as_time_number, as_time_str, non_finite, Interner, LineWarnings, MetricPoint, Parsed,
    Skipped, MAX_LINE_WARNINGS,
};

/// A JSON value as far as metrics care; strings and keys borrow from the line when they can.
#[derive(Debug)]
pub(crate) enum Val<'a> {
    Num(f64),
    Str(Cow<'a, str>),
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
    /// null, a boolean or an array: never a metric.
    Other,
}

/// The string that stands in for a bare `NaN` / `Infinity` / `-Infinity` (Python's json.dumps
/// writes these, which strict JSON parsers reject). It starts with NUL so no real string matches.
const SENTINEL_NAN: &str = "\u{0}NaN";
const SENTINEL_INF: &str = "\u{0}Infinity";
const SENTINEL_NEG_INF: &str = "\u{0}-Infinity";
/// The string that stands in for a number beyond a 64-bit float (`1e400`), which serde_json
/// refuses, failing the whole line: the value is skipped, the line's others kept.
const SENTINEL_OVERFLOW: &str = "\u{0}Overflow";

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Val<'de>, E> {
                Ok(Val::Other)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
                Ok(Val::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
                Ok(Val::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
                Ok(Val::Num(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
                Ok(Val::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Val<'de>, E> {
                Ok(Val::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let v: Val<'de> = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Val::Obj(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Val<'_> {
    /// Whether this value was a number too large for a 64-bit float.
    pub(crate) fn is_overflow(&self) -> bool {
        matches!(self, Val::Str(s) if s == SENTINEL_OVERFLOW)
    }

    /// The value as a warning shows it (a bad time).
    pub(crate) fn shown(&self) -> String {
        match self {
            Val::Num(v) => format!("{v:e}"),
            Val::Str(s) if s == SENTINEL_OVERFLOW => "a number beyond a 64-bit float".into(),
            Val::Str(s) if s.starts_with('\u{0}') => s[1..].to_string(),
            Val::Str(s) => format!("{s:?}"),
            Val::Obj(_) => "an object".into(),
            Val::Other => "not a number or string".into(),
        }
    }

    /// The number this value stands for: a JSON number, a bare NaN/Infinity, or a string such
    /// as "nan" or "inf" (DVCLive writes non-finite values so).
    pub(crate) fn number(&self) -> Option<f64> {
        match self {
            Val::Num(v) => Some(*v),
            Val::Str(s) => match s.as_ref() {
                SENTINEL_NAN => Some(f64::NAN),
                SENTINEL_INF => Some(f64::INFINITY),
                SENTINEL_NEG_INF => Some(f64::NEG_INFINITY),
                other => non_finite(other),
            },
            _ => None,
        }
    }
}

/// Parses one JSON document, accepting bare `NaN`, `Infinity` and `-Infinity` as Python writes them.
pub(crate) fn parse_value<'a>(
    text: &'a str,
    scratch: &'a mut String,
) -> serde_json::Result<Val<'a>> {
    match serde_json::from_str::<Val<'a>>(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let overflow = e.to_string().starts_with("number out of range");
            if !(overflow || text.contains("NaN") || text.contains("Infinity")) {
                return Err(e);
            }
            *scratch = rewrite_barewords(text);
            serde_json::from_str::<Val<'a>>(scratch)
        }
    }
}

/// Replaces bare `NaN`, `Infinity` and `-Infinity`, and numbers beyond a 64-bit float, outside
/// strings with sentinel strings.
fn rewrite_barewords(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let b = text.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' && i + 1 < b.len() {
                out.push_str(&text[i..i + 2]);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else {
            let rest = &text[i..];
            let word = [
                ("-Infinity", SENTINEL_NEG_INF),
                ("Infinity", SENTINEL_INF),
                ("NaN", SENTINEL_NAN),
            ]
            .into_iter()
            .find(|(w, _)| rest.starts_with(w));
            if let Some((w, s)) = word {
                push_sentinel(&mut out, s);
                i += w.len();
                continue;
            }
            if c == b'-' || c.is_ascii_digit() {
                let len = rest
                    .bytes()
                    .position(|b| !(b.is_ascii_digit() || b"+-.eE".contains(&b)))
                    .unwrap_or(rest.len());
                let token = &rest[..len];
                if token.parse::<f64>().is_ok_and(f64::is_infinite) {
                    push_sentinel(&mut out, SENTINEL_OVERFLOW);
                } else {
                    out.push_str(token);
                }
                i += len;
                continue;
            }
        }
        // Copy one UTF-8 character.
        let len = utf8_len(c);
        out.push_str(&text[i..(i + len).min(b.len())]);
        i += len;
    }
    out
}

fn push_sentinel(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(&s.replace('\u{0}', "\\u0000"));
    out.push('"');
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// Flattens nested objects into `prefix.key` points; non-numbers go to `skipped`.
pub(crate) fn flatten(
    prefix: &str,
    sep: char,
    val: &Val<'_>,
    emit: &mut dyn FnMut(&str, f64),
    skipped: &mut Skipped,
) {
    match val {
        Val::Obj(fields) => {
            for (k, v) in fields {
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}{sep}{k}")
                };
                flatten(&key, sep, v, emit, skipped);
            }
        }
        other => match other.number() {
            Some(v) => emit(prefix, v),
            None => skipped.reject(prefix, other),
        },
    }
}

/// Files at least this large are parsed by several threads, each a run of whole lines (a
/// million-point file is about 30 MB; see BENCHMARKS.md). Points keep the file's order.
const PARALLEL_BYTES: usize = 4 << 20;

/// The threads that parse a JSON-lines file of `len` bytes: one per core (at most 8) from
/// [`PARALLEL_BYTES`] on, else one.
pub(crate) fn threads_for(len: u64) -> usize {
    if len < PARALLEL_BYTES as u64 {
        1
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
    }
}

/// Parses JSON lines. Blank lines are skipped; a line that is not a JSON object warns with its
/// number; `step` must be an integer and `ts` a number of seconds or an RFC 3339 time.
pub fn parse_jsonl(bytes: &[u8], source: &str) -> Parsed {
    parse_jsonl_threads(bytes, source, threads_for(bytes.len() as u64))
}

/// [`parse_jsonl`] on `threads` runs of whole lines at once; the result is the same for any
/// number of threads.
pub(crate) fn parse_jsonl_threads(bytes: &[u8], source: &str, threads: usize) -> Parsed {
    let mut points: Vec<MetricPoint> = Vec::new();
    let mut lines = Lines::new(source);
    lines.parse(bytes, None, threads, &mut |part| {
        if points.is_empty() {
            points = part;
        } else {
            points.extend(part);
        }
    });
    Parsed {
        points,
        warnings: lines.finish(),
    }
}

/// Parses JSON lines read a window at a time: `fill(buf, max)` appends up to `max` more bytes
/// of the source to `buf` (0 at its end). Each window of about `window` bytes of whole lines
/// (more only for a line longer than that) is parsed by `threads` threads and its points go to
/// `sink` in file order: the whole source is never held, nor all its points. Reading and
/// parsing run on a thread of their own, about one window ahead of `sink` (on the caller's
/// thread), so that parsing the next window overlaps storing this one. Points and warnings
/// (line numbers included) are those of [`parse_jsonl`] on the whole source, for any window
/// size. The error of `fill` ends the parse. A line without `ts` gets the time `stamps` says it
/// was first seen (by its byte offset), when given and known.
pub(crate) fn parse_jsonl_windows<E: Send>(
    fill: impl FnMut(&mut Vec<u8>, usize) -> Result<usize, E> + Send,
    source: &str,
    window: usize,
    threads: usize,
    stamps: Option<&Stamps>,
    sink: &mut dyn FnMut(Vec<MetricPoint>),
) -> Result<Vec<String>, E> {
    std::thread::scope(|s| {
        // One part per parser thread: at most a window of points waits here.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<MetricPoint>>(threads.max(1));
        let reader = s.spawn(move || {
            read_windows(fill, source, window, threads, stamps, &mut |part| {
                // Fails only when the receiving side is gone (it panicked): nothing to keep.
                let _ = tx.send(part);
            })
        });
        for part in rx {
            sink(part);
        }
        reader.join().expect("the metrics reader thread panicked")
    })
}

/// The reading and parsing of [`parse_jsonl_windows`], on one thread.
fn read_windows<E>(
    mut fill: impl FnMut(&mut Vec<u8>, usize) -> Result<usize, E>,
    source: &str,
    window: usize,
    threads: usize,
    stamps: Option<&Stamps>,
    sink: &mut dyn FnMut(Vec<MetricPoint>),
) -> Result<Vec<String>, E> {
    let window = window.max(1);
    // Byte offset in the source of `buf[0]`, for the stamps.
    let mut base = 0u64;
    let mut lines = Lines::new(source);
    let mut buf: Vec<u8> = Vec::new();
    let mut want = window;
    let mut eof = false;
    loop {
        while !eof && buf.len() < want {
            let before = buf.len();
            buf.reserve_exact(want - before);
            if fill(&mut buf, want - before)? == 0 {
                eof = true;
            }
        }
        let cut = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|b| *b == b'\n') {
                Some(nl) => nl + 1,
                None => {
                    // One line longer than the window: read on to its end.
                    want = buf.len() + window;
                    continue;
                }
            }
        };
        if cut > 0 {
            lines.parse(&buf[..cut], stamps.map(|s| (base, s)), threads, sink);
        }
        if eof {
            break;
        }
        buf.drain(..cut);
        base += cut as u64;
        want = window;
    }
    Ok(lines.finish())
}

/// The warnings of a source parsed in runs of whole lines, in order, and where its lines are.
struct Lines<'s> {
    source: &'s str,
    bad: LineWarnings,
    skipped: Skipped,
    /// Lines in the runs parsed so far.
    lines_before: usize,
}

impl<'s> Lines<'s> {
    fn new(source: &'s str) -> Self {
        Lines {
            source,
            bad: LineWarnings::new(source),
            skipped: Skipped::default(),
            lines_before: 0,
        }
    }

    /// Parses the next run of lines of the source (ending with a newline, or at the end of the
    /// source) on `threads` threads; its points go to `sink` in order, one part per thread.
    /// `at`: the source offset of `bytes` and the stamps of its lines.
    fn parse(
        &mut self,
        bytes: &[u8],
        at: Option<(u64, &Stamps)>,
        threads: usize,
        sink: &mut dyn FnMut(Vec<MetricPoint>),
    ) {
        let chunks = split_at_lines(bytes, threads.max(1));
        // Each chunk's own offset in the source, so its lines find their stamps.
        let at_of = |c: &[u8]| {
            at.map(|(base, s)| {
                (
                    base + (c.as_ptr() as usize - bytes.as_ptr() as usize) as u64,
                    s,
                )
            })
        };
        let parts: Vec<Chunk> = if chunks.len() == 1 {
            vec![parse_chunk(chunks[0], at_of(chunks[0]))]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|c| {
                        let at = at_of(c);
                        s.spawn(move || parse_chunk(c, at))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a metrics parser thread panicked"))
                    .collect()
            })
        };
        for part in parts {
            if !part.points.is_empty() {
                sink(part.points);
            }
            for (line, problem) in part.bad {
                self.bad.add(self.lines_before + line, problem);
            }
            self.bad.more += part.more_bad;
            self.skipped.merge(part.skipped);
            self.lines_before += part.newlines;
        }
    }

    /// The warnings: malformed lines by number, then skipped values and times.
    fn finish(self) -> Vec<String> {
        let mut warnings = Vec::new();
        self.bad.finish(&mut warnings);
        warnings.extend(self.skipped.warnings(self.source));
        warnings
    }
}

/// Up to `n` slices of `bytes`, each ending just after a newline (the last at the end).
fn split_at_lines(bytes: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for k in 1..n {
        let target = (bytes.len() * k / n).max(start);
        let Some(nl) = bytes[target..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let end = target + nl + 1;
        out.push(&bytes[start..end]);
        start = end;
    }
    out.push(&bytes[start..]);
    out
}

/// What one run of lines gave; line numbers count from 1 within the run.
struct Chunk {
    points: Vec<MetricPoint>,
    /// The first malformed lines (as many as a warning lists), then a count of the rest.
    bad: Vec<(usize, String)>,
    more_bad: usize,
    skipped: Skipped,
    newlines: usize,
}

/// `at`: the source offset of `bytes` and the stamps giving a line without `ts` its time.
fn parse_chunk(bytes: &[u8], at: Option<(u64, &Stamps)>) -> Chunk {
    let mut points = Vec::new();
    let mut bad: Vec<(usize, String)> = Vec::new();
    let mut more_bad = 0;
    let mut add_bad = |line: usize, problem: String| {
        if bad.len() < MAX_LINE_WARNINGS {
            bad.push((line, problem));
        } else {
            more_bad += 1;
        }
    };
    let mut skipped = Skipped::default();
    let mut keys = Interner::default();
    let mut scratch = String::new();
    let mut segments = 0;
    let mut next_start = 0u64;
    'lines: for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        segments = i + 1;
        let line_no = i + 1;
        // Just past this line's newline: the offset the live reader noted it by.
        let line_end = next_start + raw.len() as u64 + 1;
        next_start = line_end;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            add_bad(line_no, "not UTF-8".into());
            continue;
        };
        let fields = match parse_value(text, &mut scratch) {
            Ok(Val::Obj(fields)) => fields,
            Ok(_) => {
                add_bad(line_no, "not a JSON object".into());
                continue;
            }
            Err(e) => {
                add_bad(line_no, format!("not JSON ({e})"));
                continue;
            }
        };
        let mut step = None;
        let mut time = None;
        for (k, v) in &fields {
            match k.as_ref() {
                "step" => match v.number().and_then(as_step) {
                    Some(s) => step = Some(s),
                    None => {
                        add_bad(line_no, "\"step\" is not an integer".into());
                        continue 'lines;
                    }
                },
                "ts" => {
                    time = match v {
                        Val::Str(s) => as_time_str(s),
                        other => other.number().and_then(as_time_number),
                    };
                    if time.is_none() {
                        skipped.add_bad_time(|| v.shown());
                    }
                }
                _ => {}
            }
        }
        if time.is_none() {
            time = at.and_then(|(base, s)| s.time_of(base + line_end));
        }
        for (k, v) in &fields {
            if k == "step" || k == "ts" {
                continue;
            }
            match v {
                Val::Obj(_) => flatten(
                    k,
                    '.',
                    v,
                    &mut |key, value| {
                        points.push(MetricPoint {
                            key: keys.get(key),
                            step,
                            value,
                            time,
                        })
                    },
                    &mut skipped,
                ),
                other => match other.number() {
                    Some(value) => points.push(MetricPoint {
                        key: keys.get(k),
                        step,
                        value,
                        time,
                    }),
                    None => skipped.reject(k, other),
                },
            }
        }
    }
    Chunk {
        points,
        bad,
        more_bad,
        skipped,
        newlines: segments.saturating_sub(1),
    }
}
