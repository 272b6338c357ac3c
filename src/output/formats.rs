//! Run lists as tables with chosen columns, CSV and JSON lines; and one run as a release-notes line
//! or a Markdown block.

use comfy_table::{presets, ContentArrangement, Table};

use super::{code_short, image_short, show_time, status_text};
use crate::record::json::run_json;
pub use crate::record::text::release_line;
use crate::record::text::{command_line, datasets_text, human_duration};
use std::collections::HashMap;

use super::metrics::value_text;
use crate::capture::dataset::DatasetDigest;
use crate::record::Run;
use crate::store::metrics::{is_metric_expr, parse_metric_sort, MetricSort, Stat};

/// A column of `ls --columns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    Name,
    Status,
    Started,
    Ended,
    Duration,
    Image,
    Digest,
    Code,
    Branch,
    Datasets,
    Params,
    Tags,
    Command,
    Host,
    User,
    Exit,
    RerunOf,
    /// The Slurm job (`ARRAY_TASK` for an array task) or Kubernetes pod the run ran in.
    Job,
}

/// Help text listing the column names.
pub const COLUMNS_HELP: &str = "Columns of the table or CSV, comma-separated: id, name, status, \
started, ended, duration, image, digest, code, branch, datasets, params, tags, command, host, user, \
exit, rerun_of, job, sweep; metric:KEY[:last|min|max|count] (a metric's value); param:KEY (a param's \
value) [default: id,name,status,started,duration,image,code,command]";

const ALL: [(Column, &str); 19] = [
    (Column::Id, "id"),
    (Column::Name, "name"),
    (Column::Status, "status"),
    (Column::Started, "started"),
    (Column::Ended, "ended"),
    (Column::Duration, "duration"),
    (Column::Image, "image"),
    (Column::Digest, "digest"),
    (Column::Code, "code"),
    (Column::Branch, "branch"),
    (Column::Datasets, "datasets"),
    (Column::Params, "params"),
    (Column::Tags, "tags"),
    (Column::Command, "command"),
    (Column::Host, "host"),
    (Column::User, "user"),
    (Column::Exit, "exit"),
    (Column::RerunOf, "rerun_of"),
    (Column::Job, "job"),
];

impl Column {
    /// The columns of a plain `repro ls`.
    pub const DEFAULT: [Column; 8] = [
        Column::Id,
        Column::Name,
        Column::Status,
        Column::Started,
        Column::Duration,
        Column::Image,
        Column::Code,
        Column::Command,
    ];

    /// Every column name.
    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|(_, n)| *n).collect()
    }

    /// The name used in `--columns` and as the CSV header.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
            .expect("every column is named")
    }

    /// Parses `id,name,…`.
    pub fn parse_list(list: &str) -> Result<Vec<Column>, String> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let p = part.to_ascii_lowercase().replace('-', "_");
            let c = ALL
                .iter()
                .find(|(_, n)| *n == p)
                .map(|(c, _)| *c)
                .ok_or_else(|| format!("unknown column '{part}'"))?;
            out.push(c);
        }
        if out.is_empty() {
            return Err("--columns needs at least one column".into());
        }
        Ok(out)
    }

    /// The short, human value shown in a table.
    fn table_value(self, r: &Run, utc: bool) -> String {
        let dash = || "-".to_string();
        match self {
            Column::Id => r.short_id().to_string(),
            Column::Name => r.name.clone().unwrap_or_else(dash),
            Column::Status => status_text(r),
            Column::Started => show_time(&r.started_at, utc),
            Column::Ended => r
                .ended_at
                .as_deref()
                .map(|e| show_time(e, utc))
                .unwrap_or_else(dash),
            Column::Duration => r.duration_ms.map(human_duration).unwrap_or_else(dash),
            Column::Image => image_short(r),
            Column::Digest => r
                .image
                .as_ref()
                .and_then(|i| i.digest.as_deref())
                .map(|d| d[..d.len().min(19)].to_string())
                .unwrap_or_else(dash),
            Column::Code => code_short(r),
            Column::Exit => match (r.exit_code, r.signal) {
                (_, Some(s)) => crate::exec::signal_name(s),
                (Some(c), None) => c.to_string(),
                (None, None) => dash(),
            },
            Column::RerunOf => r
                .rerun_of
                .as_deref()
                .map(|x| x[..x.len().min(12)].to_string())
                .unwrap_or_else(dash),
            other => {
                let v = other.csv_value(r);
                if v.is_empty() {
                    dash()
                } else {
                    v
                }
            }
        }
    }

    /// The full, exact value written to CSV (empty when absent).
    fn csv_value(self, r: &Run) -> String {
        let img = r.image.as_ref();
        match self {
            Column::Id => r.id.clone(),
            Column::Name => r.name.clone().unwrap_or_default(),
            Column::Status => r.status.to_string(),
            Column::Started => r.started_at.clone(),
            Column::Ended => r.ended_at.clone().unwrap_or_default(),
            Column::Duration => r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
            Column::Image => img.map(|i| i.reference.clone()).unwrap_or_default(),
            Column::Digest => img.and_then(|i| i.digest.clone()).unwrap_or_default(),
            Column::Code => r
                .code
                .as_ref()
                .and_then(|c| c.commit.clone())
                .unwrap_or_default(),
            Column::Branch => r
                .code
                .as_ref()
                .and_then(|c| c.branch.clone())
                .unwrap_or_default(),
            Column::Datasets => datasets_text(r, ", "),
            Column::Params => r
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            Column::Tags => r.tags.join(","),
            Column::Command => command_line(r),
            Column::Host => r.host.clone(),
            Column::User => r.user.clone(),
            Column::Exit => match (r.exit_code, r.signal) {
                (_, Some(s)) => crate::exec::signal_name(s),
                (Some(c), None) => c.to_string(),
                (None, None) => String::new(),
            },
            Column::RerunOf => r.rerun_of.clone().unwrap_or_default(),
            Column::Job => match &r.scheduler {
                Some(c) => match (&c.slurm, &c.kubernetes) {
                    (Some(s), _) => s.display_id(),
                    (None, Some(k)) => k.pod.clone().unwrap_or_default(),
                    (None, None) => String::new(),
                },
                None => String::new(),
            },
        }
    }
}

/// A column of `ls --columns`: a field of the run, one statistic of one of its metrics
/// (`metric:acc`, `metric:loss:min`), or one of its params (`param:lr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsColumn {
    Run(Column),
    Metric(MetricSort),
    Param(String),
    /// The sweep (`repro sweep`) the run belongs to.
    Sweep,
}

/// The values of each metric column, by run id (a run without the metric is absent).
#[derive(Debug, Default)]
pub struct MetricCells(
    Vec<(MetricSort, HashMap<String, f64>)>,
    HashMap<String, String>,
);

impl MetricCells {
    /// Records the sweep of each run that belongs to one (the `sweep` column).
    pub fn set_sweeps(&mut self, sweeps: HashMap<String, String>) {
        self.1 = sweeps;
    }

    /// Records the values of one metric column.
    pub fn insert(&mut self, m: &MetricSort, values: HashMap<String, f64>) {
        self.0.push((m.clone(), values));
    }

    fn get(&self, m: &MetricSort, run_id: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(k, _)| k == m)
            .and_then(|(_, v)| v.get(run_id).copied())
    }
}

impl LsColumn {
    /// Parses `id,name,metric:acc,…`: column names, and `metric:KEY[:STAT]`.
    pub fn parse_list(list: &str) -> Result<Vec<LsColumn>, String> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if is_metric_expr(part) {
                let m = parse_metric_sort(part).map_err(|e| format!("--columns {e}"))?;
                out.push(LsColumn::Metric(m));
            } else if part == "sweep" {
                out.push(LsColumn::Sweep);
            } else if let Some(key) = part.strip_prefix("param:") {
                if key.is_empty() {
                    return Err("--columns param: needs a key (param:lr)".into());
                }
                out.push(LsColumn::Param(key.to_string()));
            } else {
                out.extend(Column::parse_list(part)?.into_iter().map(LsColumn::Run));
            }
        }
        if out.is_empty() {
            return Err("--columns needs at least one column".into());
        }
        Ok(out)
    }

    /// The CSV header: the column name, or `metric:KEY` (`metric:KEY:STAT` for another
    /// statistic than the last value).
    fn csv_name(&self) -> String {
        match self {
            LsColumn::Run(c) => c.name().to_string(),
            LsColumn::Metric(m) => metric_label("metric:", m),
            LsColumn::Param(k) => format!("param:{k}"),
            LsColumn::Sweep => "sweep".into(),
        }
    }

    /// The table header: the column name in capitals, or the metric key as recorded (keys are
    /// case-sensitive), with its statistic when not the last value.
    fn table_name(&self) -> String {
        match self {
            LsColumn::Run(c) => c.name().to_ascii_uppercase(),
            LsColumn::Metric(m) => metric_label("", m),
            LsColumn::Param(k) => k.clone(),
            LsColumn::Sweep => "SWEEP".into(),
        }
    }

    fn value(&self, r: &Run, cells: &MetricCells, table: bool, utc: bool) -> String {
        match self {
            LsColumn::Run(c) if table => c.table_value(r, utc),
            LsColumn::Run(c) => c.csv_value(r),
            LsColumn::Metric(m) => match cells.get(m, &r.id) {
                Some(v) if m.stat == Stat::Count => format!("{}", v as u64),
                Some(v) => value_text(v),
                None if table => "-".into(),
                None => String::new(),
            },
            LsColumn::Param(k) => match r.params.get(k) {
                Some(v) => v.clone(),
                None if table => "-".into(),
                None => String::new(),
            },
            // The table shows 12 characters, as it does of run ids (a unique prefix works).
            LsColumn::Sweep => match cells.1.get(&r.id) {
                Some(s) if table => s.chars().take(12).collect(),
                Some(s) => s.clone(),
                None if table => "-".into(),
                None => String::new(),
            },
        }
    }
}

fn metric_label(prefix: &str, m: &MetricSort) -> String {
    match m.stat {
        Stat::Last => format!("{prefix}{}", m.key),
        s => format!("{prefix}{}:{}", m.key, s.column()),
    }
}

/// `name@version` for each dataset (the digest when there is no version).
/// A table of runs with the given columns; `tty` picks a bordered table fitted to the terminal,
/// else plain left-aligned columns without trailing spaces.
pub fn runs_table(runs: &[Run], columns: &[Column], tty: bool, utc: bool) -> String {
    runs_table_styled(runs, columns, tty, false, utc)
}

/// The colour of a status word in tables.
pub fn status_color(status: crate::record::Status) -> comfy_table::Color {
    use crate::record::Status;
    use comfy_table::Color;
    match status {
        Status::Succeeded => Color::Green,
        Status::Failed => Color::Red,
        Status::Killed | Status::Lost => Color::Magenta,
        Status::Running => Color::Yellow,
        // Not the job's failure: the engine never started it.
        Status::Error => Color::Cyan,
    }
}

/// A terminal that reports no size (a bare pty, some CI runners) would squeeze every column to
/// one character: use `COLUMNS` then, or let the table be as wide as its content.
/// The terminal's width for a table: comfy-table's reading of the TTY, else `COLUMNS`; `None`
/// when neither is known (or under 20 columns): the table is then drawn at its natural width.
fn terminal_width(t: &Table) -> Option<usize> {
    const MIN: u16 = 20;
    t.width()
        .filter(|w| *w >= MIN)
        .or_else(|| {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<u16>().ok())
                .filter(|c| *c >= MIN)
        })
        .map(usize::from)
}

/// How a column fits a narrow terminal: `None` never gives way (the id and status: copied and
/// scanned); `Some((floor, drop))`: cut with `…` down to `floor` characters (0: never cut —
/// a time or a digest prefix cut is no use), and left out in increasing `drop` order when
/// cutting is not enough. The command is cut first and left out last: it says what ran.
fn fit_rule(c: &LsColumn) -> Option<(usize, u8)> {
    match c {
        LsColumn::Run(Column::Id | Column::Status) => None,
        LsColumn::Run(Column::Ended) => Some((0, 1)),
        LsColumn::Run(Column::RerunOf) => Some((0, 2)),
        LsColumn::Run(Column::Job) => Some((8, 3)),
        LsColumn::Run(Column::User) => Some((8, 4)),
        LsColumn::Run(Column::Host) => Some((8, 5)),
        LsColumn::Run(Column::Branch) => Some((8, 6)),
        LsColumn::Run(Column::Digest) => Some((0, 7)),
        LsColumn::Run(Column::Datasets) => Some((10, 8)),
        LsColumn::Run(Column::Tags) => Some((10, 9)),
        LsColumn::Run(Column::Params) => Some((10, 10)),
        LsColumn::Run(Column::Image) => Some((16, 11)),
        LsColumn::Run(Column::Started) => Some((0, 12)),
        LsColumn::Run(Column::Code) => Some((0, 13)),
        LsColumn::Run(Column::Exit) => Some((0, 14)),
        LsColumn::Run(Column::Duration) => Some((0, 15)),
        LsColumn::Metric(_) => Some((0, 16)),
        LsColumn::Param(_) => Some((8, 16)),
        LsColumn::Sweep => Some((0, 4)),
        LsColumn::Run(Column::Name) => Some((8, 17)),
        LsColumn::Run(Column::Command) => Some((16, 18)),
    }
}

/// Fits the columns to `width` terminal cells: each shown column (by index) and the width its
/// cells are cut to (`None`: not cut). Cuttable columns shrink to their floors (the command
/// first), then columns are left out in [`fit_rule`]'s order, then width left over goes back
/// to the cut columns, so a row is always one line.
fn fit_columns(
    columns: &[LsColumn],
    header: &[String],
    rows: &[Vec<String>],
    width: usize,
) -> Vec<(usize, Option<usize>)> {
    let len = |s: &str| s.chars().count();
    let natural: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .map(|r| len(&r[i]))
                .chain([len(&header[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // UTF8_FULL_CONDENSED: a border and a space each side per column, one closing border.
    let total = |ws: &[(usize, usize)]| ws.iter().map(|(_, w)| w + 3).sum::<usize>() + 1;
    let floor = |i: usize| match fit_rule(&columns[i]) {
        Some((f, _)) if f > 0 => f.max(len(&header[i])).min(natural[i]),
        _ => natural[i],
    };
    let mut shown: Vec<(usize, usize)> = natural.iter().copied().enumerate().collect();
    // Cut, the command first, then from the most expendable.
    let mut cut_order: Vec<usize> = (0..columns.len()).collect();
    cut_order.sort_by_key(|&i| {
        let d = fit_rule(&columns[i]).map_or(0, |(_, d)| d);
        (columns[i] != LsColumn::Run(Column::Command), d)
    });
    for &i in &cut_order {
        let over = total(&shown).saturating_sub(width);
        if over == 0 {
            break;
        }
        if let Some(s) = shown.iter_mut().find(|(j, _)| *j == i) {
            s.1 = s.1.saturating_sub(over).max(floor(i));
        }
    }
    // Leave out, the most expendable first.
    let mut drop_order: Vec<usize> = (0..columns.len())
        .filter(|&i| fit_rule(&columns[i]).is_some())
        .collect();
    drop_order.sort_by_key(|&i| fit_rule(&columns[i]).map_or(0, |(_, d)| d));
    for &i in &drop_order {
        if total(&shown) <= width {
            break;
        }
        shown.retain(|(j, _)| *j != i);
    }
    // Give what is left back to the cut columns, the command first.
    for &i in &cut_order {
        let spare = width.saturating_sub(total(&shown));
        if spare == 0 {
            break;
        }
        if let Some(s) = shown.iter_mut().find(|(j, _)| *j == i) {
            s.1 = (s.1 + spare).min(natural[i]);
        }
    }
    shown
        .into_iter()
        .map(|(i, w)| (i, (w < natural[i]).then_some(w)))
        .collect()
}

/// `s` cut to `width` characters, the last one `…` (unchanged when it fits or `width` is `None`).
fn cut(s: &str, width: Option<usize>) -> String {
    match width {
        Some(w) if s.chars().count() > w => {
            let mut out: String = s.chars().take(w.saturating_sub(1)).collect();
            out.push('…');
            out
        }
        _ => s.to_string(),
    }
}

/// [`runs_table`] with the status column coloured when `color` (`--color`, `NO_COLOR`, TTY).
pub fn runs_table_styled(
    runs: &[Run],
    columns: &[Column],
    tty: bool,
    color: bool,
    utc: bool,
) -> String {
    let columns: Vec<LsColumn> = columns.iter().map(|c| LsColumn::Run(*c)).collect();
    ls_table(runs, &columns, &MetricCells::default(), tty, color, utc)
}

/// The table of `ls`: run fields and metric columns (NaN and ±inf as `NaN`, `inf`, `-inf`; a
/// run without the metric shows `-`).
pub fn ls_table(
    runs: &[Run],
    columns: &[LsColumn],
    cells: &MetricCells,
    tty: bool,
    color: bool,
    utc: bool,
) -> String {
    let mut t = Table::new();
    if color {
        // comfy-table styles only on a TTY by itself; `--color always` asks for it when piped.
        t.enforce_styling();
    }
    let header: Vec<String> = columns.iter().map(|c| c.table_name()).collect();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| crate::sanitize::escape(&c.value(r, cells, true, utc)).into_owned())
                .collect()
        })
        .collect();
    // On a terminal, every row is one line: cells are cut with `…` to fit its width (see
    // [`fit_columns`]), never wrapped.
    let shown: Vec<(usize, Option<usize>)> = if tty {
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Disabled);
        match terminal_width(&t) {
            Some(width) => fit_columns(columns, &header, &rows, width),
            None => (0..columns.len()).map(|i| (i, None)).collect(),
        }
    } else {
        t.load_preset(presets::NOTHING);
        (0..columns.len()).map(|i| (i, None)).collect()
    };
    t.set_header(
        shown
            .iter()
            .map(|&(i, w)| cut(&header[i], w))
            .collect::<Vec<_>>(),
    );
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for (r, row) in runs.iter().zip(&rows) {
        t.add_row(
            shown
                .iter()
                .map(|&(i, w)| {
                    let cell = comfy_table::Cell::new(cut(&row[i], w));
                    if color && columns[i] == LsColumn::Run(Column::Status) {
                        cell.fg(status_color(r.status))
                    } else {
                        cell
                    }
                })
                .collect::<Vec<_>>(),
        );
    }
    let mut s = t.to_string();
    if !tty {
        s = s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
    }
    s.push('\n');
    s
}

/// Quotes a CSV field when needed (RFC 4180): a comma, quote, CR or LF, or edge spaces.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV with a header row of column names; CRLF line ends as RFC 4180 says.
pub fn runs_csv(runs: &[Run], columns: &[Column]) -> String {
    let columns: Vec<LsColumn> = columns.iter().map(|c| LsColumn::Run(*c)).collect();
    ls_csv(runs, &columns, &MetricCells::default())
}

/// The CSV of `ls`: full values; a metric column holds the shortest exact form of the number
/// (`NaN`, `inf`, `-inf` as such) and is empty for a run without the metric.
pub fn ls_csv(runs: &[Run], columns: &[LsColumn], cells: &MetricCells) -> String {
    let mut out = columns
        .iter()
        .map(|c| csv_field(&c.csv_name()))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for r in runs {
        let row: Vec<String> = columns
            .iter()
            .map(|c| csv_field(&c.value(r, cells, false, false)))
            .collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One compact JSON object per line.
pub fn values_jsonl(objects: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str(&serde_json::to_string(o).expect("json"));
        out.push('\n');
    }
    out
}

/// One compact `show --json` object per line.
pub fn runs_jsonl(runs: &[Run]) -> String {
    let mut out = String::new();
    for r in runs {
        out.push_str(&serde_json::to_string(&run_json(r)).expect("json"));
        out.push('\n');
    }
    out
}

/// A short Markdown block describing a run (for a PR, a model card, release notes). Recorded
/// values are escaped: a newline in one cannot add a line, a control cannot reach the terminal.
pub fn run_markdown(r: &Run, utc: bool) -> String {
    use crate::sanitize::escape as e;
    let mut o = String::new();
    let title = match &r.name {
        Some(n) => format!("### Run `{}` ({})\n\n", r.id, e(n)),
        None => format!("### Run `{}`\n\n", r.id),
    };
    o.push_str(&title);
    let mut status = status_text(r);
    if let Some(d) = r.duration_ms {
        status.push_str(&format!(" in {}", human_duration(d)));
    }
    o.push_str(&format!(
        "- **Outcome:** {status}, started {}\n",
        show_time(&r.started_at, utc)
    ));
    match &r.image {
        None => o.push_str("- **Image:** none (ran on the host)\n"),
        Some(i) => {
            o.push_str(&format!(
                "- **Image:** `{}` → `{}` ({})\n",
                e(&i.reference),
                e(i.digest.as_deref().unwrap_or("UNPINNED")),
                i.resolved_by.as_str()
            ));
            if let Some(x) = &i.index_digest {
                o.push_str(&format!("  - index `{}`\n", e(x)));
            }
        }
    }
    match &r.code {
        None => o.push_str("- **Code:** none\n"),
        Some(c) => {
            let mut s = format!(
                "- **Code:** `{}`",
                e(c.commit.as_deref().unwrap_or("(no commit)"))
            );
            if let Some(b) = &c.branch {
                s.push_str(&format!(" on `{}`", e(b)));
            }
            if let Some(u) = &c.remote {
                s.push_str(&format!(" ({})", e(u)));
            }
            if c.dirty {
                s.push_str(&format!(
                    ", dirty: patch `sha256:{}`",
                    e(c.patch_sha256.as_deref().unwrap_or("-"))
                ));
            }
            o.push_str(&s);
            o.push('\n');
        }
    }
    for d in &r.datasets {
        let mut s = format!("- **Dataset:** `{}` ({})", e(&d.name), d.kind.as_str());
        if let Some(u) = &d.uri {
            s.push_str(&format!(" `{}`", e(u)));
        }
        if let Some(v) = d.version.as_deref().or(d.digest.as_deref()) {
            s.push_str(&format!(" @ `{}`", e(v)));
        }
        o.push_str(&s);
        o.push('\n');
    }
    o.push_str(&format!(
        "- **Command:** `{}`\n",
        e(&command_line(r)).replace('`', "'")
    ));
    if !r.params.is_empty() {
        let p: Vec<String> = r
            .params
            .iter()
            .map(|(k, v)| format!("`{}={}`", e(k), e(v)))
            .collect();
        o.push_str(&format!("- **Params:** {}\n", p.join(", ")));
    }
    o.push_str(&format!(
        "- **Reproduce:** `repro script {} > rerun.sh`\n",
        r.short_id()
    ));
    o
}

/// `repro dataset hash --json`: {"schema_version":1,"path","digest","files","bytes","from_cache"}.
pub fn dataset_hash_json(path: &std::path::Path, d: &DatasetDigest) -> String {
    let v = serde_json::json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "path": path.to_string_lossy(),
        "digest": d.digest,
        "files": d.files,
        "bytes": d.bytes,
        "from_cache": d.from_cache,
    });
    format!("{v}\n")
}

/// `repro dataset hash`: the digest on the first line, then the counts.
pub fn dataset_hash_text(d: &DatasetDigest) -> String {
    format!(
        "{}\nfiles       {}\nbytes       {} ({})\nfrom cache  {}\n",
        d.digest,
        d.files,
        d.bytes,
        human_bytes(d.bytes),
        d.from_cache
    )
}

/// `1.5 GiB`-style size for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The stderr note of `ls` when its limit cut the list.
pub fn cut_note(cut: crate::ops::ls::Cut) -> String {
    use crate::ops::ls::{Cut, COUNT_CAP};
    match cut {
        Cut::Of { shown, total } => {
            format!("{shown} of {} shown (--limit N, --all)", grouped(total))
        }
        Cut::OfOver { shown } => {
            format!(
                "{shown} of over {} shown (--limit N, --all)",
                grouped(COUNT_CAP)
            )
        }
        Cut::More { shown } => format!("the first {shown} shown; more match (--limit N, --all)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn column_lists_parse() {
        assert_eq!(
            Column::parse_list("id, rerun-of,TAGS").unwrap(),
            vec![Column::Id, Column::RerunOf, Column::Tags]
        );
        assert!(Column::parse_list("id,bogus").is_err());
        assert!(Column::parse_list("").is_err());
        for n in Column::names() {
            assert_eq!(Column::parse_list(n).unwrap()[0].name(), n);
        }
    }
}
