//! Summary files: one JSON object or YAML mapping (nested keys joined with `.`), and CSV / TSV
//! tables (a `step` column makes a history; otherwise the last row is the summary).

use super::jsonl::{flatten, parse_value, Val};
use super::{
    as_step, as_time_str, parse_jsonl, parse_number, Interner, LineWarnings, MetricPoint, Parsed,
    Skipped,
};

/// Parses one JSON object. A top-level integer `step` is the step of every value (DVCLive's
/// `metrics.json` carries one). A file of several JSON lines is read as JSON lines.
pub fn parse_json(bytes: &[u8], source: &str) -> Parsed {
    parse_json_sep(bytes, source, '.')
}

pub(crate) fn parse_json_sep(bytes: &[u8], source: &str, sep: char) -> Parsed {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return warn(format!("{source}: not UTF-8; no metrics read"));
    };
    let mut scratch = String::new();
    let fields = match parse_value(text, &mut scratch) {
        Ok(Val::Obj(fields)) => fields,
        Ok(_) => {
            return warn(format!(
                "{source}: not a JSON object (metrics files hold {{\"name\": number, …}}); no metrics read"
            ))
        }
        Err(e) => {
            // Several objects, one a line: the JSON-lines format under a .json name.
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
            if e.classify() == serde_json::error::Category::Syntax && lines > 1 {
                let mut s2 = String::new();
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                if matches!(parse_value(first, &mut s2), Ok(Val::Obj(_))) {
                    return parse_jsonl(bytes, source);
                }
            }
            return warn(format!("{source}: not valid JSON ({e}); no metrics read"));
        }
    };
    let mut points = Vec::new();
    let mut skipped = Skipped::default();
    let mut keys = Interner::default();
    let mut step = None;
    let mut warnings = Vec::new();
    if let Some((_, v)) = fields.iter().find(|(k, _)| k == "step") {
        step = v.number().and_then(as_step);
        if step.is_none() {
            warnings.push(format!(
                "{source}: \"step\" is not an integer; values read without a step"
            ));
        }
    }
    for (k, v) in &fields {
        if k == "step" {
            continue;
        }
        flatten(
            k,
            sep,
            v,
            &mut |key, value| {
                points.push(MetricPoint {
                    key: keys.get(key),
                    step,
                    value,
                    time: None,
                })
            },
            &mut skipped,
        );
    }
    warnings.extend(skipped.warnings(source));
    Parsed { points, warnings }
}

/// Parses one YAML mapping; `.nan`, `.inf` and `-.inf` are kept as such.
pub fn parse_yaml(bytes: &[u8], source: &str) -> Parsed {
    let value: yaml_serde::Value = match yaml_serde::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return warn(format!("{source}: not valid YAML ({e}); no metrics read")),
    };
    let yaml_serde::Value::Mapping(map) = value else {
        return warn(format!(
            "{source}: not a YAML mapping (metrics files hold `name: number` lines); no metrics read"
        ));
    };
    let mut points = Vec::new();
    let mut skipped = Skipped::default();
    let mut keys = Interner::default();
    let mut warnings = Vec::new();
    let step = match map.get("step") {
        None => None,
        Some(v) => {
            let s = yaml_number(v).and_then(as_step);
            if s.is_none() {
                warnings.push(format!(
                    "{source}: \"step\" is not an integer; values read without a step"
                ));
            }
            s
        }
    };
    fn walk(
        prefix: &str,
        v: &yaml_serde::Value,
        out: &mut dyn FnMut(&str, f64),
        skipped: &mut Skipped,
    ) {
        match v {
            yaml_serde::Value::Mapping(m) => {
                for (k, v) in m {
                    let k = match k {
                        yaml_serde::Value::String(s) => s.clone(),
                        yaml_serde::Value::Number(n) => n.to_string(),
                        yaml_serde::Value::Bool(b) => b.to_string(),
                        _ => {
                            skipped.add(&format!("{prefix}.<complex key>"));
                            continue;
                        }
                    };
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out, skipped);
                }
            }
            yaml_serde::Value::Tagged(t) => walk(prefix, &t.value, out, skipped),
            other => match yaml_number(other) {
                Some(n) => out(prefix, n),
                None => skipped.add(prefix),
            },
        }
    }
    for (k, v) in &map {
        if matches!(k, yaml_serde::Value::String(s) if s == "step") {
            continue;
        }
        let key = match k {
            yaml_serde::Value::String(s) => s.clone(),
            yaml_serde::Value::Number(n) => n.to_string(),
            yaml_serde::Value::Bool(b) => b.to_string(),
            _ => {
                skipped.add("<complex key>");
                continue;
            }
        };
        walk(
            &key,
            v,
            &mut |key, value| {
                points.push(MetricPoint {
                    key: keys.get(key),
                    step,
                    value,
                    time: None,
                })
            },
            &mut skipped,
        );
    }
    warnings.extend(skipped.warnings(source));
    Parsed { points, warnings }
}

fn yaml_number(v: &yaml_serde::Value) -> Option<f64> {
    match v {
        yaml_serde::Value::Number(n) => n.as_f64(),
        yaml_serde::Value::String(s) => super::non_finite(s),
        _ => None,
    }
}

/// Columns of a table that carry the time, not a metric.
const TIME_COLUMNS: [&str; 4] = ["timestamp", "time", "ts", "wall_time"];

/// Parses a CSV (`delim` b',') or TSV (b'\t') table with a header row. With a `step` column each
/// row is one step of every other numeric column; without one the last row is the summary.
/// A `timestamp`/`time`/`ts`/`wall_time` column gives the time. Empty cells are skipped.
pub fn parse_delimited(bytes: &[u8], delim: u8, source: &str) -> Parsed {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let headers: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        Err(e) => {
            return warn(format!(
                "{source}: cannot read the header row ({e}); no metrics read"
            ))
        }
    };
    if headers.iter().all(String::is_empty) {
        return warn(format!("{source}: empty (no header row); no metrics read"));
    }
    let lower: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    let step_col = lower.iter().position(|h| h == "step");
    let time_col = lower
        .iter()
        .position(|h| TIME_COLUMNS.contains(&h.as_str()));
    let mut keys = Interner::default();
    let metric_cols: Vec<(usize, std::sync::Arc<str>)> = headers
        .iter()
        .enumerate()
        .filter(|(i, h)| Some(*i) != step_col && Some(*i) != time_col && !h.is_empty())
        .map(|(i, h)| (i, keys.get(h)))
        .collect();
    let mut points = Vec::new();
    let mut bad = LineWarnings::new(source);
    let mut skipped = Skipped::default();
    let mut warnings = Vec::new();
    let mut last_row: Option<csv::StringRecord> = None;
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                bad.add(line, format!("unreadable ({e})"));
                // The reader cannot resynchronise after a quoting error: stop here.
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    break;
                }
                continue;
            }
        }
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() != headers.len() {
            bad.add(
                line,
                format!("{} fields, the header has {}", record.len(), headers.len()),
            );
            continue;
        }
        match step_col {
            None => last_row = Some(record.clone()),
            Some(sc) => {
                let Some(step) = parse_number(&record[sc]).and_then(as_step) else {
                    bad.add(line, format!("step {:?} is not an integer", &record[sc]));
                    continue;
                };
                let time = time_col.and_then(|tc| cell_time(&record[tc], &mut skipped));
                for (i, key) in &metric_cols {
                    let cell = record[*i].trim();
                    if cell.is_empty() {
                        continue;
                    }
                    match parse_number(cell) {
                        Some(value) => points.push(MetricPoint {
                            key: key.clone(),
                            step: Some(step),
                            value,
                            time,
                        }),
                        None => skipped.add(key),
                    }
                }
            }
        }
    }
    if let Some(row) = last_row {
        let time = time_col.and_then(|tc| cell_time(&row[tc], &mut skipped));
        for (i, key) in &metric_cols {
            let cell = row[*i].trim();
            if cell.is_empty() {
                continue;
            }
            match parse_number(cell) {
                Some(value) => points.push(MetricPoint {
                    key: key.clone(),
                    step: None,
                    value,
                    time,
                }),
                None => skipped.add(key),
            }
        }
    }
    bad.finish(&mut warnings);
    warnings.extend(skipped.warnings(source));
    Parsed { points, warnings }
}

/// The time in a table cell; a non-empty cell that is not a time is counted for a warning.
fn cell_time(cell: &str, skipped: &mut Skipped) -> Option<f64> {
    let t = as_time_str(cell);
    if t.is_none() && !cell.trim().is_empty() {
        skipped.add_bad_time(|| format!("{:?}", cell.trim()));
    }
    t
}

fn warn(w: String) -> Parsed {
    Parsed {
        points: Vec::new(),
        warnings: vec![w],
    }
}
