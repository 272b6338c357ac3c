//! `repro sweep`: one recorded run (through [`crate::ops::run::run`]) per combination of a
//! parameter grid, grouped under a sweep id, with a summary ranked by an objective.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use crate::error::Hinted;
use crate::ops::run::RunRequest;
use crate::ops::Events;
use crate::store::Store;

/// Why a sweep could not be planned or run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A `--grid`, `--random`, `--objective` or command template is malformed (a usage error).
    #[error("{message}")]
    Usage {
        /// What is wrong, naming the flag.
        message: String,
        /// How to write it.
        hint: String,
    },
    /// The store could not record the sweep.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// `--needed` could not resolve the image or hash the datasets the runs would record.
    #[error("--needed: {0}")]
    Needed(Box<crate::ops::run::RunError>),
}

impl Hinted for SweepError {
    fn hint(&self) -> Option<String> {
        match self {
            SweepError::Usage { hint, .. } => Some(hint.clone()),
            SweepError::Store(e) => e.hint(),
            SweepError::Needed(e) => e.hint(),
        }
    }
    fn is_usage(&self) -> bool {
        matches!(self, SweepError::Usage { .. })
    }
}

fn usage(message: impl Into<String>, hint: impl Into<String>) -> SweepError {
    SweepError::Usage {
        message: message.into(),
        hint: hint.into(),
    }
}

/// One `--grid KEY=V1,V2,…`: a parameter and the values it takes, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    /// The parameter name (also the `{name}` of the command template).
    pub key: String,
    /// Its values.
    pub values: Vec<String>,
}

/// Parses the `--grid` flags; a key given twice, an empty key or an empty value is refused.
pub fn parse_grid(specs: &[String]) -> Result<Vec<Axis>, SweepError> {
    const HINT: &str = "write it as --grid lr=0.1,0.03,0.01 (one --grid per parameter)";
    let mut axes: Vec<Axis> = Vec::new();
    for spec in specs {
        let (key, values) = spec.split_once('=').ok_or_else(|| {
            usage(
                format!("--grid '{spec}' is not of the form KEY=V1,V2,…"),
                HINT,
            )
        })?;
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !key_ok {
            return Err(usage(
                format!("--grid '{spec}': '{key}' is not a parameter name"),
                "use letters, digits, '_', '-' or '.' in the name (it is written {name} in the command)",
            ));
        }
        if axes.iter().any(|a| a.key == key) {
            return Err(usage(
                format!("--grid {key} is given twice"),
                format!("list all values of {key} in one --grid {key}=V1,V2"),
            ));
        }
        let values: Vec<String> = values.split(',').map(str::to_string).collect();
        if values.iter().any(String::is_empty) {
            return Err(usage(format!("--grid '{spec}' has an empty value"), HINT));
        }
        axes.push(Axis {
            key: key.to_string(),
            values,
        });
    }
    if axes.is_empty() {
        return Err(usage("repro sweep needs at least one --grid", HINT));
    }
    Ok(axes)
}

/// Every combination of the axes, the last axis varying fastest.
pub fn combinations(axes: &[Axis]) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    for axis in axes {
        let mut next = Vec::with_capacity(out.len() * axis.values.len());
        for combo in &out {
            for v in &axis.values {
                let mut c = combo.clone();
                c.insert(axis.key.clone(), v.clone());
                next.push(c);
            }
        }
        out = next;
    }
    out
}

/// `n` of the combinations drawn without replacement by a generator seeded with `seed`: the
/// same grid, `n` and seed give the same runs in the same order on every machine.
pub fn sample<T>(mut all: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    // splitmix64: tiny, portable, and stable across releases (unlike a library's default RNG).
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let n = n.min(all.len());
    for i in 0..n {
        let j = i + (next() % (all.len() - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(n);
    all
}

/// A piece of one argument of the command template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

/// The command with `{name}` placeholders (`{{` and `}}` for literal braces), checked against
/// the grid: every placeholder names a grid key and every grid key is used.
#[derive(Debug, Clone)]
pub struct Template {
    args: Vec<Vec<Piece>>,
}

fn parse_arg(arg: &str) -> Result<Vec<Piece>, SweepError> {
    const HINT: &str = "write a parameter as {lr} and a literal brace as {{ or }}";
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(usage(
                                format!("the command argument '{arg}' has an unclosed '{{'"),
                                HINT,
                            ))
                        }
                    }
                }
                if name.is_empty() || name.contains('{') {
                    return Err(usage(
                        format!("the command argument '{arg}' has a malformed placeholder"),
                        HINT,
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Param(name));
            }
            '}' => {
                return Err(usage(
                    format!("the command argument '{arg}' has a '}}' without '{{'"),
                    HINT,
                ))
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

impl Template {
    /// Parses the command and checks it against the grid's keys.
    pub fn parse(command: &[OsString], axes: &[Axis]) -> Result<Template, SweepError> {
        let mut args = Vec::with_capacity(command.len());
        for a in command {
            let s = a.to_str().ok_or_else(|| {
                usage(
                    format!("the command argument {a:?} is not UTF-8"),
                    "write the command in UTF-8",
                )
            })?;
            args.push(parse_arg(s)?);
        }
        let keys: BTreeSet<&str> = axes.iter().map(|a| a.key.as_str()).collect();
        let mut used = BTreeSet::new();
        for p in args.iter().flatten() {
            if let Piece::Param(name) = p {
                if !keys.contains(name.as_str()) {
                    return Err(usage(
                        format!("the command uses {{{name}}}, which no --grid defines"),
                        format!(
                            "add --grid {name}=V1,V2, or write {{{{{name}}}}} for literal braces (grid keys: {})",
                            keys.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                used.insert(name.as_str());
            }
        }
        if let Some(unused) = keys.iter().find(|k| !used.contains(*k)) {
            return Err(usage(
                format!("--grid {unused} is never used in the command"),
                format!("pass it to the command as {{{unused}}} (e.g. --{unused} {{{unused}}}), or drop the --grid"),
            ));
        }
        Ok(Template { args })
    }

    /// The argv of one combination.
    pub fn render(&self, combo: &BTreeMap<String, String>) -> Vec<OsString> {
        self.args
            .iter()
            .map(|pieces| {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => s.push_str(t),
                        Piece::Param(k) => s.push_str(combo.get(k).map_or("", String::as_str)),
                    }
                }
                OsString::from(s)
            })
            .collect()
    }
}

/// `--objective metric:KEY[:min|max]`: the metric (its last value) that ranks the runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objective {
    /// The metric key.
    pub key: String,
    /// Lower is better (`:min`); higher is better otherwise.
    pub minimize: bool,
}

impl Objective {
    /// Parses `metric:KEY`, `metric:KEY:max` or `metric:KEY:min`.
    pub fn parse(spec: &str) -> Result<Objective, SweepError> {
        const HINT: &str =
            "write it as --objective metric:val_acc (highest best) or metric:val_loss:min";
        let rest = spec.strip_prefix("metric:").ok_or_else(|| {
            usage(
                format!("--objective '{spec}' does not start with metric:"),
                HINT,
            )
        })?;
        let (key, minimize) = match rest.rsplit_once(':') {
            Some((k, "min")) => (k, true),
            Some((k, "max")) => (k, false),
            Some((_, d)) => {
                return Err(usage(
                    format!("--objective '{spec}': '{d}' is not min or max"),
                    HINT,
                ))
            }
            None => (rest, false),
        };
        if key.is_empty() {
            return Err(usage(format!("--objective '{spec}' names no metric"), HINT));
        }
        Ok(Objective {
            key: key.to_string(),
            minimize,
        })
    }
}

/// A planned sweep: the run request every combination starts from and what varies.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// The `repro run` flags shared by every run (its `command` is replaced per combination).
    pub base: RunRequest,
    /// The combinations to run, in order.
    pub combos: Vec<BTreeMap<String, String>>,
    /// The command template.
    pub template: Template,
    /// Ranks the summary.
    pub objective: Option<Objective>,
    /// `--needed`: skip a combination whose identical run already succeeded.
    pub needed: bool,
    /// Params are read from each combination's argv (`params_from_argv`); the grid's and
    /// `--param`'s win.
    pub argv_params: bool,
}

impl SweepPlan {
    /// Checks the grid, template and objective; nothing runs and nothing is recorded.
    pub fn new(
        base: RunRequest,
        grid: &[String],
        random: Option<(usize, u64)>,
        objective: Option<&str>,
        needed: bool,
    ) -> Result<SweepPlan, SweepError> {
        let axes = parse_grid(grid)?;
        // Params read from the command's arguments were read from the template (`--lr {lr}`):
        // each combination reads them again from its own argv.
        let mut base = base;
        let argv_params = !base.params_from_argv.is_empty();
        for k in std::mem::take(&mut base.params_from_argv) {
            base.params.remove(&k);
        }
        if let Some(k) = axes.iter().find(|a| base.params.contains_key(&a.key)) {
            return Err(usage(
                format!("--param {0} and --grid {0} are both given", k.key),
                format!("drop --param {}: the grid sets it for each run", k.key),
            ));
        }
        let template = Template::parse(&base.command, &axes)?;
        let objective = objective.map(Objective::parse).transpose()?;
        let mut combos = combinations(&axes);
        if let Some((n, seed)) = random {
            if n == 0 {
                return Err(usage(
                    "--random 0 runs nothing",
                    "give --random N with N ≥ 1",
                ));
            }
            combos = sample(combos, n, seed);
        }
        Ok(SweepPlan {
            base,
            combos,
            template,
            objective,
            needed,
            argv_params,
        })
    }
}

/// How one combination ended.
#[derive(Debug, Clone)]
pub struct SweepRun {
    /// The combination's parameters.
    pub params: BTreeMap<String, String>,
    /// The recorded run, when one was recorded.
    pub id: Option<String>,
    /// `succeeded`, `failed`, … or `error` (no run recorded: the message).
    pub status: String,
    /// repro's exit code for this run.
    pub exit: i32,
    /// The objective's last value, if the run reported it.
    pub objective: Option<f64>,
    /// Why no run was recorded.
    pub error: Option<String>,
}

impl SweepRun {
    /// Whether the run succeeded (or, with `--needed`, had succeeded before).
    pub fn ok(&self) -> bool {
        self.exit == 0 && self.error.is_none()
    }
}

/// The outcome of a sweep.
#[derive(Debug)]
pub struct SweepOutcome {
    /// The sweep id (`repro ls --sweep ID`).
    pub id: String,
    /// One entry per combination started, best first when an objective was given.
    pub runs: Vec<SweepRun>,
    /// Combinations never started (the sweep was interrupted).
    pub not_started: usize,
}

impl SweepOutcome {
    /// The runs that did not succeed.
    pub fn failed(&self) -> usize {
        self.runs.iter().filter(|r| !r.ok()).count()
    }

    /// The exit code of `repro sweep`: 0 when every combination ran and succeeded, else the
    /// first failed run's exit code (1 when it has none, or when only combinations were left
    /// unstarted).
    pub fn exit_code(&self) -> i32 {
        if self.failed() == 0 && self.not_started == 0 {
            return 0;
        }
        self.runs
            .iter()
            .filter(|r| !r.ok())
            .map(|r| r.exit)
            .find(|&e| e != 0)
            .unwrap_or(1)
    }
}

/// A new sweep id: a ULID, lower case, like a run id.
pub fn new_sweep_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// Set by [`on_stop_signal`]: SIGINT or SIGTERM reached repro between two runs.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How many stop signals reached this process, and the last one (forwarded to `--jobs` members).
static SIGNALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static LAST_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    LAST_SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
    SIGNALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM for the sweep's lifetime so that one arriving between two runs
/// stops the sweep instead of killing repro. While a run's command is alive the run installs its
/// own forwarding handlers and restores these afterwards (`exec::run`).
struct StopGuard {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl StopGuard {
    fn install() -> StopGuard {
        STOP.store(false, std::sync::atomic::Ordering::SeqCst);
        SIGNALS.store(0, std::sync::atomic::Ordering::SeqCst);
        let mut old = Vec::new();
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_stop_signal as *const () as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        StopGuard { old }
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: restores the disposition saved by `install`.
            unsafe {
                libc::sigaction(*sig, prev, std::ptr::null_mut());
            }
        }
    }
}

/// Whether an exit code says the run was stopped by SIGINT or SIGTERM (Ctrl-C, `kill`).
pub(crate) fn interrupted(exit: i32) -> bool {
    exit == 128 + 2 || exit == 128 + 15
}

/// Runs every combination, one after the other, each a recorded `repro run`; starts nothing new
/// after a run ended by Ctrl-C (SIGINT) or SIGTERM, or after one reached repro between runs.
pub fn sweep(
    ev: &dyn Events,
    store: &mut Store,
    plan: &SweepPlan,
) -> Result<SweepOutcome, SweepError> {
    let id = new_sweep_id();
    ev.status(&format!("sweep {id}: {} run(s)", plan.combos.len()));
    let mut runs = Vec::with_capacity(plan.combos.len());
    let _stop = StopGuard::install();
    let same = if plan.needed {
        Some(Identity::now(ev, store, &plan.base)?)
    } else {
        None
    };
    for (pos, combo) in plan.combos.iter().enumerate() {
        if STOP.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        if let Some(done) = skipped(ev, store, plan, &id, pos, same.as_ref())? {
            runs.push(done);
            continue;
        }
        ev.status(&format!(
            "sweep {id} [{}/{}]: {}",
            pos + 1,
            plan.combos.len(),
            describe(combo)
        ));
        let done = run_one(ev, store, plan, &id, pos)?;
        let stop = interrupted(done.exit);
        runs.push(done);
        if stop {
            break;
        }
    }
    let not_started = plan.combos.len() - runs.len();
    Ok(finish(ev, plan, id, runs, not_started))
}

/// The request of combination `pos`: the shared flags, the substituted argv, the params.
fn request(plan: &SweepPlan, pos: usize) -> RunRequest {
    let combo = &plan.combos[pos];
    let mut req = plan.base.clone();
    req.command = plan.template.render(combo);
    req.params.extend(combo.clone());
    if plan.argv_params {
        for (k, v) in crate::capture::argv_params::params_from_os_argv(&req.command) {
            if !req.params.contains_key(&k) {
                req.params.insert(k.clone(), v);
                req.params_from_argv.push(k);
            }
        }
        req.params_from_argv.sort();
    }
    req
}

/// With `--needed`: the earlier run that makes combination `pos` unnecessary, as a summary row.
pub(crate) fn skipped(
    ev: &dyn Events,
    store: &Store,
    plan: &SweepPlan,
    id: &str,
    pos: usize,
    same: Option<&Identity>,
) -> Result<Option<SweepRun>, SweepError> {
    let Some(same) = same else {
        return Ok(None);
    };
    let combo = &plan.combos[pos];
    let Some(prior) = done_before(store, &request(plan, pos), same)? else {
        return Ok(None);
    };
    ev.status(&format!(
        "sweep {id} [{}/{}]: {} already succeeded as run {prior}; skipped",
        pos + 1,
        plan.combos.len(),
        describe(combo)
    ));
    let objective = match &plan.objective {
        Some(o) => objective_of(store, &prior, o)?,
        None => None,
    };
    Ok(Some(SweepRun {
        params: combo.clone(),
        id: Some(prior),
        status: "skipped (done)".into(),
        exit: 0,
        objective,
        error: None,
    }))
}

/// Runs combination `pos` in this process as one recorded `repro run` in sweep `id`; a run that
/// could not start is a row with its error (the sweep goes on).
fn run_one(
    ev: &dyn Events,
    store: &mut Store,
    plan: &SweepPlan,
    id: &str,
    pos: usize,
) -> Result<SweepRun, SweepError> {
    let combo = &plan.combos[pos];
    Ok(match crate::ops::run::run(ev, store, &request(plan, pos)) {
        Ok(f) => {
            store.add_sweep_run(id, &f.id, pos)?;
            let objective = match &plan.objective {
                Some(o) => objective_of(store, &f.id, o)?,
                None => None,
            };
            SweepRun {
                params: combo.clone(),
                id: Some(f.id.clone()),
                status: store.get_run(&f.id)?.status.as_str().to_string(),
                exit: f.exit,
                objective,
                error: None,
            }
        }
        Err(e) => {
            let msg = match e.hint() {
                Some(h) => format!("{e} (hint: {h})"),
                None => e.to_string(),
            };
            ev.error(&format!("{}: {msg}", describe(combo)));
            SweepRun {
                params: combo.clone(),
                id: None,
                status: "error".into(),
                exit: 1,
                objective: None,
                error: Some(e.to_string()),
            }
        }
    })
}

/// Says how many combinations never started and ranks the rows.
pub(crate) fn finish(
    ev: &dyn Events,
    plan: &SweepPlan,
    id: String,
    mut runs: Vec<SweepRun>,
    not_started: usize,
) -> SweepOutcome {
    if not_started > 0 {
        ev.warn(&format!(
            "sweep {id} interrupted: {not_started} combination(s) not started"
        ));
    }
    if let Some(o) = &plan.objective {
        rank(&mut runs, o);
    }
    SweepOutcome {
        id,
        runs,
        not_started,
    }
}

/// What a `--jobs` member process reports to the sweep that started it (a JSON file).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MemberReport {
    id: Option<String>,
    exit: i32,
    status: String,
    error: Option<String>,
}

/// The command line a member runs: this sweep's own, with the member flag after `sweep` — so
/// a member plans exactly as the sweep did (one planning path), whether it is started here
/// (`--jobs N`) or by a Slurm array task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberLine {
    /// The repro executable and the arguments up to and including `sweep` (global flags).
    pub before: Vec<OsString>,
    /// The arguments after `sweep` (its flags, `--`, the command template).
    pub after: Vec<OsString>,
}

impl MemberLine {
    /// From the executable and this process's argv (`argv[0]` is replaced by `exe`).
    pub fn of(exe: std::path::PathBuf, argv: &[OsString]) -> MemberLine {
        let at = argv.iter().position(|a| a == "sweep").unwrap_or(0);
        let mut before = vec![exe.into_os_string()];
        before.extend(argv.iter().skip(1).take(at).cloned());
        MemberLine {
            before,
            after: argv.iter().skip(at + 1).cloned().collect(),
        }
    }

    /// The full argv of member `m`.
    pub fn argv(&self, m: &Member) -> Vec<OsString> {
        let mut v = self.before.clone();
        v.extend(m.flag());
        v.extend(self.after.iter().cloned());
        v
    }

    /// The process of member `m`.
    pub fn command(&self, m: &Member) -> std::process::Command {
        let argv = self.argv(m);
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }
}

/// Which member of which sweep a `repro sweep` process is (`--sweep-member ID:POS:REPORT`,
/// given by [`sweep_parallel`] to the processes it starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The sweep id.
    pub sweep: String,
    /// The combination's position in the plan.
    pub pos: usize,
    /// Where to write the report.
    pub report: std::path::PathBuf,
}

impl Member {
    /// Parses `ID:POS:REPORT`.
    pub fn parse(spec: &str) -> Result<Member, SweepError> {
        let bad = || {
            usage(
                format!("--sweep-member '{spec}' is not ID:POS:REPORT"),
                "--sweep-member is given by `repro sweep --jobs N` to the processes it starts; do not pass it",
            )
        };
        let mut parts = spec.splitn(3, ':');
        let (Some(sweep), Some(pos), Some(report)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let pos = pos.parse().map_err(|_| bad())?;
        if sweep.is_empty() || report.is_empty() {
            return Err(bad());
        }
        Ok(Member {
            sweep: sweep.to_string(),
            pos,
            report: report.into(),
        })
    }

    /// The flag that makes a `repro sweep` process this member.
    pub fn flag(&self) -> [OsString; 2] {
        let mut v = OsString::from(format!("{}:{}:", self.sweep, self.pos));
        v.push(self.report.as_os_str());
        ["--sweep-member".into(), v]
    }
}

/// Runs one member of a `--jobs` sweep (this process was started by [`sweep_parallel`]) and
/// writes its report; a stop signal that arrived before the run started starts nothing.
pub fn run_member(
    ev: &dyn Events,
    store: &mut Store,
    plan: &SweepPlan,
    member: &Member,
) -> Result<i32, SweepError> {
    if member.pos >= plan.combos.len() {
        return Err(usage(
            format!(
                "--sweep-member names combination {} of a sweep of {}",
                member.pos,
                plan.combos.len()
            ),
            "--sweep-member is given by `repro sweep --jobs N`; do not pass it",
        ));
    }
    let _stop = StopGuard::install();
    let done = if STOP.load(std::sync::atomic::Ordering::SeqCst) {
        // Stopped while starting up: run nothing.
        let mut row = not_run(plan, member.pos, "stopped before the run started".into());
        row.exit = 128 + LAST_SIGNAL.load(std::sync::atomic::Ordering::SeqCst);
        row
    } else {
        run_one(ev, store, plan, &member.sweep, member.pos)?
    };
    let report = MemberReport {
        id: done.id,
        exit: done.exit,
        status: done.status,
        error: done.error,
    };
    let text = serde_json::to_vec(&report).map_err(|e| usage(e.to_string(), "report a bug"))?;
    std::fs::write(&member.report, text).map_err(|e| {
        usage(
            format!("cannot write {}: {e}", member.report.display()),
            "check the temporary directory (TMPDIR) is writable",
        )
    })?;
    Ok(report.exit)
}

/// Where the output of the `--jobs` members goes: one call per line (with its `\n`, or the
/// last bytes before the stream ended), labelled with the member's combination.
pub trait MemberOutput: Sync {
    /// One line of a member's stdout (`stderr == false`) or stderr.
    fn line(&self, label: &str, stderr: bool, line: &[u8]);
}

/// A member process being waited for.
struct Running {
    pos: usize,
    /// Its pid, for forwarding signals (a waiter thread owns the child and reaps it).
    pid: u32,
    report: std::path::PathBuf,
}

/// `--jobs N`: runs the combinations N at a time, each in its own `repro sweep --sweep-member`
/// process (built by `member`, which is this same sweep's command line plus the member flag), its
/// output passed to `out` line by line. A stop signal starts nothing new and is forwarded to the
/// running members (which forward it to their jobs and record them); so is a member's run that
/// ended by SIGINT or SIGTERM. The members' process groups are their own, so a terminal's Ctrl-C
/// reaches them once, through this process.
pub fn sweep_parallel(
    ev: &dyn Events,
    store: &mut Store,
    plan: &SweepPlan,
    jobs: usize,
    member: &dyn Fn(&Member) -> std::process::Command,
    out: &dyn MemberOutput,
) -> Result<SweepOutcome, SweepError> {
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::Ordering;
    let id = new_sweep_id();
    ev.status(&format!(
        "sweep {id}: {} run(s), {jobs} at a time",
        plan.combos.len()
    ));
    let _stop = StopGuard::install();
    let same = if plan.needed {
        Some(Identity::now(ev, store, &plan.base)?)
    } else {
        None
    };
    let dir = std::env::temp_dir().join(format!("repro-sweep-{id}"));
    std::fs::create_dir_all(&dir).map_err(|e| {
        usage(
            format!("cannot make {}: {e}", dir.display()),
            "check the temporary directory (TMPDIR) is writable",
        )
    })?;
    let _cleanup = RemoveOnDrop(dir.clone());
    let mut runs = Vec::with_capacity(plan.combos.len());
    let mut next = 0;
    let mut forwarded = 0;
    let mut stopping = false;
    std::thread::scope(|scope| -> Result<(), SweepError> {
        let mut running: Vec<Running> = Vec::new();
        // Each member's waiter sends (position, exit status) the moment it ends.
        let (ended_tx, ended) = std::sync::mpsc::channel::<(usize, std::io::Result<_>)>();
        loop {
            if STOP.load(Ordering::SeqCst) {
                stopping = true;
            }
            while !stopping && running.len() < jobs && next < plan.combos.len() {
                let pos = next;
                next += 1;
                if let Some(done) = skipped(ev, store, plan, &id, pos, same.as_ref())? {
                    runs.push((pos, done));
                    continue;
                }
                let label = crate::sanitize::escape(&describe(&plan.combos[pos])).into_owned();
                ev.status(&format!(
                    "sweep {id} [{}/{}]: {label} started",
                    pos + 1,
                    plan.combos.len()
                ));
                let m = Member {
                    sweep: id.clone(),
                    pos,
                    report: dir.join(format!("{pos}.json")),
                };
                let mut cmd = member(&m);
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .process_group(0);
                let mut child = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        ev.error(&format!("{label}: cannot start repro: {e}"));
                        runs.push((pos, not_run(plan, pos, format!("cannot start repro: {e}"))));
                        continue;
                    }
                };
                for (stream, is_err) in [
                    (
                        child
                            .stdout
                            .take()
                            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                        false,
                    ),
                    (
                        child
                            .stderr
                            .take()
                            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                        true,
                    ),
                ] {
                    if let Some(stream) = stream {
                        let label = label.clone();
                        scope.spawn(move || pump(stream, &label, is_err, out));
                    }
                }
                running.push(Running {
                    pos,
                    pid: child.id(),
                    report: m.report,
                });
                let tx = ended_tx.clone();
                scope.spawn(move || {
                    let status = child.wait();
                    let _ = tx.send((pos, status));
                });
            }
            let signals = SIGNALS.load(Ordering::SeqCst);
            if signals > forwarded {
                forwarded = signals;
                let sig = LAST_SIGNAL.load(Ordering::SeqCst);
                for r in &running {
                    // SAFETY: kill(2) with the pid of a member still listed as running (its
                    // waiter may have reaped it a moment ago; pids are not reused that fast).
                    unsafe {
                        libc::kill(r.pid as libc::pid_t, sig);
                    }
                }
            }
            if running.is_empty() && (stopping || next >= plan.combos.len()) {
                return Ok(());
            }
            // Wakes as soon as a member ends, and every 20 ms to look at signals.
            let Ok((pos, status)) = ended.recv_timeout(std::time::Duration::from_millis(20)) else {
                continue;
            };
            let Some(i) = running.iter().position(|r| r.pos == pos) else {
                continue;
            };
            let r = running.swap_remove(i);
            let done = match status {
                Ok(status) => reported(store, plan, &r, status)?,
                Err(e) => not_run(plan, r.pos, format!("cannot wait for repro: {e}")),
            };
            if interrupted(done.exit) {
                stopping = true;
            }
            runs.push((r.pos, done));
        }
    })?;
    let not_started = plan.combos.len() - runs.len();
    runs.sort_by_key(|(pos, _)| *pos);
    let runs = runs.into_iter().map(|(_, r)| r).collect();
    Ok(finish(ev, plan, id, runs, not_started))
}

/// Removes a directory (the members' reports) when the sweep ends, however it ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A row for a combination whose member process could not run.
pub(crate) fn not_run(plan: &SweepPlan, pos: usize, error: String) -> SweepRun {
    SweepRun {
        params: plan.combos[pos].clone(),
        id: None,
        status: "error".into(),
        exit: 1,
        objective: None,
        error: Some(error),
    }
}

/// The row of combination `pos` from the report its member wrote, `None` when there is none
/// (the member was killed, or failed before running).
pub(crate) fn report_row(
    store: &Store,
    plan: &SweepPlan,
    pos: usize,
    path: &std::path::Path,
) -> Result<Option<SweepRun>, SweepError> {
    let report: Option<MemberReport> = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(rep) = report else {
        return Ok(None);
    };
    let objective = match (&plan.objective, &rep.id) {
        (Some(o), Some(id)) => objective_of(store, id, o)?,
        _ => None,
    };
    Ok(Some(SweepRun {
        params: plan.combos[pos].clone(),
        id: rep.id,
        status: rep.status,
        exit: rep.exit,
        objective,
        error: rep.error,
    }))
}

/// The row of an ended member process: its report, or its exit status.
fn reported(
    store: &Store,
    plan: &SweepPlan,
    r: &Running,
    status: std::process::ExitStatus,
) -> Result<SweepRun, SweepError> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(row) = report_row(store, plan, r.pos, &r.report)? {
        return Ok(row);
    }
    let exit = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let mut row = not_run(
        plan,
        r.pos,
        format!("repro ended with {status} before recording a run"),
    );
    row.exit = exit.max(1);
    Ok(row)
}

/// Passes a member's stream to `out` line by line until it ends.
fn pump(stream: Box<dyn std::io::Read + Send>, label: &str, stderr: bool, out: &dyn MemberOutput) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => out.line(label, stderr, &line),
        }
    }
}

/// The objective's last value in run `id`, if reported.
fn objective_of(store: &Store, id: &str, o: &Objective) -> Result<Option<f64>, SweepError> {
    Ok(store
        .metric_summaries(id)?
        .into_iter()
        .find(|m| m.key == o.key)
        .map(|m| m.last)
        .filter(|v| !v.is_nan()))
}

/// What `--needed` compares besides the argv and params, taken once before the sweep starts:
/// the commit of a clean working tree, the image digest a run would record now (a tag is
/// resolved against its registry, as `repro run` does) and the datasets' versions and digests
/// (hashed through the hash cache).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The commit, when the working tree is a clean git checkout (else nothing can match).
    commit: Option<String>,
    /// The working directory as a run records it.
    cwd: String,
    /// `None` without an image; `Some(None)` when the image could not be pinned (nothing matches).
    image: Option<Option<String>>,
    /// (name, kind, uri, version, digest) of each dataset, in order.
    datasets: Vec<DatasetKey>,
}

type DatasetKey = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn dataset_key(d: &crate::record::Dataset) -> DatasetKey {
    (
        d.name.clone(),
        d.kind.as_str().to_string(),
        d.uri.clone(),
        d.version.clone(),
        d.digest.clone(),
    )
}

impl Identity {
    /// Resolves the image and hashes the datasets of `base`; an image that cannot be resolved
    /// or a dataset that cannot be read stops the sweep before anything runs.
    pub fn now(
        ev: &dyn Events,
        store: &mut Store,
        base: &RunRequest,
    ) -> Result<Identity, SweepError> {
        let needed = |e: crate::ops::run::RunError| SweepError::Needed(Box::new(e));
        let captured = crate::capture::code::capture(&base.cwd)
            .map_err(|e| needed(crate::ops::run::RunError::from(e)))?;
        let commit = captured
            .code
            .as_ref()
            .filter(|c| !c.dirty)
            .and_then(|c| c.commit.clone());
        if commit.is_none() {
            ev.warn(
                "--needed: the working tree is not a clean git checkout, so every combination runs",
            );
        }
        let image = crate::ops::run::image_of(ev, base)
            .map_err(needed)?
            .map(|i| i.index_digest.or(i.digest));
        if let Some(None) = &image {
            ev.warn(
                "--needed: the image could not be pinned to a digest, so every combination runs",
            );
        }
        let root = captured
            .code
            .as_ref()
            .map(|c| std::path::PathBuf::from(&c.repo_root));
        let datasets = crate::ops::run::datasets_of(ev, store, base, root.as_deref())
            .map_err(needed)?
            .iter()
            .map(dataset_key)
            .collect();
        Ok(Identity {
            commit,
            cwd: captured.cwd,
            image,
            datasets,
        })
    }

    /// Whether recorded run `r` ran what this identity describes (argv and params aside).
    fn matches(&self, r: &crate::record::Run) -> bool {
        let same_code = match (&self.commit, &r.code) {
            (Some(c), Some(code)) => !code.dirty && code.commit.as_deref() == Some(c.as_str()),
            _ => false,
        };
        let same_image = match (&self.image, &r.image) {
            (None, None) => true,
            (Some(Some(d)), Some(i)) => {
                i.digest.as_deref() == Some(d.as_str())
                    || i.index_digest.as_deref() == Some(d.as_str())
            }
            _ => false,
        };
        let theirs: Vec<DatasetKey> = r.datasets.iter().map(dataset_key).collect();
        same_code && same_image && r.cwd == self.cwd && theirs == self.datasets
    }
}

/// `--needed`: the newest succeeded run identical to what `req` would record — the same clean
/// commit and working directory, argv, params, datasets (versions and digests) and image digest
/// (or no image on both). A dirty tree or a directory outside git never matches.
pub fn done_before(
    store: &Store,
    req: &RunRequest,
    same: &Identity,
) -> Result<Option<String>, SweepError> {
    let Some(commit) = &same.commit else {
        return Ok(None);
    };
    let q = crate::store::query::RunQuery {
        filter: crate::store::query::RunFilter {
            code: Some(commit.clone()),
            params: req
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        },
        status: vec![crate::record::Status::Succeeded],
        ..Default::default()
    };
    for r in store.query(&q)? {
        let same_argv = r.command.len() == req.command.len()
            && r.command
                .iter()
                .zip(&req.command)
                .all(|(a, b)| a.as_os_str() == b.as_os_str());
        if same_argv && r.params == req.params && same.matches(&r) {
            return Ok(Some(r.id));
        }
    }
    Ok(None)
}

/// Best first: runs with the objective by value (stable among ties), then those without.
pub fn rank(runs: &mut [SweepRun], o: &Objective) {
    runs.sort_by(|a, b| match (a.objective, b.objective) {
        (Some(x), Some(y)) => {
            let ord = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
            if o.minimize {
                ord
            } else {
                ord.reverse()
            }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

/// `lr=0.1 wd=0` for status lines.
pub fn describe(combo: &BTreeMap<String, String>) -> String {
    combo
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_grid_expands_to_every_combination_last_axis_fastest() {
        let axes = parse_grid(&["lr=0.1,0.01".into(), "wd=0,1e-4,1e-3".into()]).unwrap();
        let c = combinations(&axes);
        assert_eq!(c.len(), 6);
        assert_eq!(describe(&c[0]), "lr=0.1 wd=0");
        assert_eq!(describe(&c[1]), "lr=0.1 wd=1e-4");
        assert_eq!(describe(&c[5]), "lr=0.01 wd=1e-3");
    }

    #[test]
    fn bad_grids_are_refused() {
        for bad in ["lr", "=1", "lr=", "lr=1,,2", "l r=1"] {
            assert!(parse_grid(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_grid(&["lr=1".into(), "lr=2".into()]).is_err());
        assert!(parse_grid(&[]).is_err());
    }

    #[test]
    fn templates_substitute_and_keep_literal_braces() {
        let axes = parse_grid(&["lr=0.1".into(), "wd=0".into()]).unwrap();
        let t = Template::parse(&os(&["echo", "--lr={lr}", "{wd}", "{{x}}"]), &axes).unwrap();
        let combo = &combinations(&axes)[0];
        assert_eq!(t.render(combo), os(&["echo", "--lr=0.1", "0", "{x}"]));
    }

    #[test]
    fn unknown_placeholders_unused_keys_and_stray_braces_are_refused() {
        let axes = parse_grid(&["lr=0.1".into()]).unwrap();
        for bad in [
            &["echo", "{lr}", "{lrr}"][..],
            &["echo", "0.1"],
            &["echo", "{lr"],
            &["echo", "{lr}}"],
            &["echo", "{lr}", "{}"],
        ] {
            assert!(Template::parse(&os(bad), &axes).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sampling_is_reproducible_and_without_repeats() {
        let all: Vec<u32> = (0..20).collect();
        let a = sample(all.clone(), 5, 7);
        assert_eq!(a, sample(all.clone(), 5, 7));
        assert_ne!(a, sample(all.clone(), 5, 8));
        let set: BTreeSet<_> = a.iter().collect();
        assert_eq!(set.len(), 5);
        assert_eq!(sample(all, 50, 1).len(), 20);
    }

    #[test]
    fn objectives_parse_and_rank() {
        assert_eq!(
            Objective::parse("metric:loss:min").unwrap(),
            Objective {
                key: "loss".into(),
                minimize: true
            }
        );
        assert!(!Objective::parse("metric:acc").unwrap().minimize);
        assert!(Objective::parse("acc").is_err());
        assert!(Objective::parse("metric:acc:best").is_err());
        let run = |v: Option<f64>| SweepRun {
            params: BTreeMap::new(),
            id: None,
            status: "succeeded".into(),
            exit: 0,
            objective: v,
            error: None,
        };
        let mut runs = vec![run(Some(1.0)), run(None), run(Some(3.0))];
        rank(&mut runs, &Objective::parse("metric:acc").unwrap());
        assert_eq!(runs[0].objective, Some(3.0));
        assert_eq!(runs[2].objective, None);
        rank(&mut runs, &Objective::parse("metric:acc:min").unwrap());
        assert_eq!(runs[0].objective, Some(1.0));
    }

    #[test]
    fn member_flags_round_trip_and_bad_ones_are_refused() {
        let m = Member {
            sweep: "01abc".into(),
            pos: 3,
            report: "/tmp/x:y/3.json".into(),
        };
        let [flag, value] = m.flag();
        assert_eq!(flag, "--sweep-member");
        assert_eq!(Member::parse(value.to_str().unwrap()).unwrap(), m);
        for bad in ["", "id", "id:x:/r", ":1:/r", "id:1:"] {
            assert!(Member::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_member_runs_the_sweeps_own_command_line_with_its_flag_after_sweep() {
        let argv = [
            "repro", "--db", "x.db", "sweep", "--jobs", "2", "--", "t", "{lr}",
        ]
        .map(OsString::from);
        let line = MemberLine::of("/bin/repro".into(), &argv);
        let m = Member {
            sweep: "01s".into(),
            pos: 3,
            report: "/r/3.json".into(),
        };
        let got: Vec<String> = line
            .argv(&m)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "/bin/repro",
                "--db",
                "x.db",
                "sweep",
                "--sweep-member",
                "01s:3:/r/3.json",
                "--jobs",
                "2",
                "--",
                "t",
                "{lr}"
            ]
        );
    }
}
