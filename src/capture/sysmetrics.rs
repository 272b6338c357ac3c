//! System metrics of a running job (docs/metrics.md, "System metrics"): every interval a thread
//! samples the CPU use and resident memory of the job's process tree (on the host) or of its
//! container's cgroup (in container mode), the machine's used memory, and whatever an extra
//! source (the GPUs) reports, as `sys/…` metric points. Everything is read from `/proc` and
//! `/sys/fs/cgroup` directly: no subprocess per sample (only `<engine> inspect`, until the
//! container is found). Sampling never fails a run: what cannot be read is left out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::metrics::MetricPoint;

/// CPU use of the job since the previous sample, in percent of one core (two busy cores: 200).
pub const CPU_KEY: &str = "sys/cpu_percent";
/// Resident memory of the job's process tree (container mode: the cgroup's memory), bytes.
pub const RSS_KEY: &str = "sys/rss_bytes";
/// The machine's used memory (`MemTotal − MemAvailable` of `/proc/meminfo`), bytes.
pub const SYSTEM_MEMORY_KEY: &str = "sys/system_memory_used_bytes";

/// The key of GPU `index`'s utilisation, in percent.
pub fn gpu_utilization_key(index: u32) -> String {
    format!("sys/gpu{index}_utilization_percent")
}

/// The key of GPU `index`'s used memory, in bytes.
pub fn gpu_memory_key(index: u32) -> String {
    format!("sys/gpu{index}_memory_used_bytes")
}

/// Another source of values sampled with the rest (the GPUs through NVML): `(key, value)`
/// pairs with `sys/…` keys (see [`gpu_utilization_key`], [`gpu_memory_key`]); called on the
/// sampler's thread once a sample.
pub type ExtraSource = Box<dyn FnMut() -> Vec<(String, f64)> + Send>;

/// What is sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A process and all its descendants (host mode: the child repro spawned).
    Tree(u32),
    /// The container `name` run by `engine` (`podman`, `docker`): its cgroup, found through
    /// `<engine> inspect` once the container runs.
    Container { engine: String, name: String },
}

/// A running sampler; [`Sampler::stop`] ends it and gives the points.
pub struct Sampler {
    /// Never sent on: dropping it is the stop signal.
    stop: Sender<()>,
    handle: JoinHandle<Sampled>,
}

/// What a sampler gathered.
#[derive(Debug, Default)]
pub struct Sampled {
    /// The points, in the order sampled.
    pub points: Vec<MetricPoint>,
    /// Where CPU and memory were read from (`the process tree of 4242`, `the cgroup
    /// /sys/fs/cgroup/…`), `None` when the container was never found.
    pub source: Option<String>,
}

/// Starts sampling `target` every `interval`. `clock` gives each sample's time (seconds since
/// the epoch, on the run's clock).
pub fn start(
    target: Target,
    interval: Duration,
    clock: Box<dyn Fn() -> f64 + Send>,
    extra: Option<ExtraSource>,
) -> Sampler {
    let (stop, rx) = mpsc::channel::<()>();
    // The wrapper's own children's CPU before the job's: the job's share is added when it is
    // reaped (see `Tree::cpu_ticks`).
    let reaped0 = read("/proc/self/stat")
        .and_then(|s| parse_stat(&s))
        .map_or(0, |s| s.children_ticks);
    let handle = std::thread::spawn(move || {
        let mut s = State {
            target,
            source: None,
            extra,
            clock,
            reaped0,
            last: None,
            step: 0,
            points: Vec::new(),
            keys: Keys::default(),
        };
        s.run(interval, &rx);
        Sampled {
            source: s.source.as_ref().map(Source::describe),
            points: s.points,
        }
    });
    Sampler { stop, handle }
}

impl Sampler {
    /// Stops the thread at once (no wait for the interval), after one last sample, and returns
    /// every point.
    pub fn stop(self) -> Sampled {
        let Sampler { stop, handle } = self;
        // Hanging up, not sending: every later wait of the thread sees it at once. A message
        // could be taken by one wait (for `<engine> inspect`) and missed by the next.
        drop(stop);
        handle.join().unwrap_or_default()
    }
}

/// Interned keys: a point's key is an `Arc<str>`, one allocation per key.
#[derive(Default)]
struct Keys(HashMap<String, Arc<str>>);

impl Keys {
    fn get(&mut self, k: &str) -> Arc<str> {
        if let Some(a) = self.0.get(k) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(k);
        self.0.insert(k.to_string(), a.clone());
        a
    }
}

/// Where CPU and memory are read from, once known.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A process tree under `/proc`.
    Tree(u32),
    /// A cgroup's files.
    Cgroup(CgroupFiles),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Tree(pid) => format!("the process tree of pid {pid}"),
            Source::Cgroup(f) => format!(
                "the cgroup{} files {} and {}",
                if f.v2 { " v2" } else { " v1" },
                f.cpu.display(),
                f.memory.display()
            ),
        }
    }
}

/// The files of a cgroup holding its CPU time and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFiles {
    /// v2 `cpu.stat` (`usage_usec`) or v1 `cpuacct.usage` (nanoseconds).
    pub cpu: PathBuf,
    /// Whether `cpu` is v2's `cpu.stat`.
    pub v2: bool,
    /// v2 `memory.current` or v1 `memory.usage_in_bytes`.
    pub memory: PathBuf,
}

struct State {
    target: Target,
    source: Option<Source>,
    extra: Option<ExtraSource>,
    clock: Box<dyn Fn() -> f64 + Send>,
    reaped0: u64,
    /// The previous reading: when, and the CPU seconds used by then.
    last: Option<(Instant, f64)>,
    step: i64,
    points: Vec<MetricPoint>,
    keys: Keys,
}

/// How often a container not yet found is looked for (at most; never more often than sampled).
const FIND_EVERY: Duration = Duration::from_millis(500);

impl State {
    fn run(&mut self, interval: Duration, rx: &Receiver<()>) {
        let mut next = Instant::now() + interval;
        // `find` may take the stop signal while it asks the engine: then stop now.
        let stopped = self.find(rx);
        loop {
            if stopped {
                break;
            }
            let wait = if self.source.is_none() {
                FIND_EVERY.min(interval)
            } else {
                next.saturating_duration_since(Instant::now())
            };
            // The stop signal ends the wait at once: stopping never costs an interval.
            match rx.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => break,
            }
            if self.source.is_none() && self.find(rx) {
                break;
            }
            if Instant::now() >= next {
                self.sample(false);
                next += interval;
                if next < Instant::now() {
                    next = Instant::now() + interval;
                }
            }
        }
        // The tail since the last sample; a job shorter than one interval records nothing (as
        // MLflow's monitor), so short runs keep exactly the metrics their job reported.
        if self.step > 0 {
            self.sample(true);
        }
    }

    /// Finds where to read the target from, and notes the CPU used so far as the baseline.
    /// Looks for the source once; `true` when the stop signal came meanwhile (it is consumed).
    fn find(&mut self, rx: &Receiver<()>) -> bool {
        if self.source.is_some() {
            return false;
        }
        let pid = match &self.target {
            Target::Tree(pid) => Ok(Some(*pid)),
            Target::Container { engine, name } => container_pid(engine, name, rx),
        };
        let Ok(pid) = pid else {
            return true;
        };
        self.source = match &self.target {
            Target::Tree(pid) => Some(Source::Tree(*pid)),
            Target::Container { .. } => pid.map(|pid| {
                let text = read(&format!("/proc/{pid}/cgroup")).unwrap_or_default();
                match cgroup_files(&text, Path::new("/sys/fs/cgroup")) {
                    Some(files) if read_cgroup(&files).is_some() => Source::Cgroup(files),
                    // No readable cgroup (a sandbox, another layout): the container's processes.
                    _ => Source::Tree(pid),
                }
            }),
        };
        if let Some(src) = &self.source {
            let cpu = self.cpu_and_memory(src).map(|r| r.0);
            self.last = cpu.map(|c| (Instant::now(), c));
        }
        false
    }

    /// CPU seconds used so far and resident bytes (`None` for the memory of a tree that ended).
    fn cpu_and_memory(&self, src: &Source) -> Option<(f64, Option<u64>)> {
        match src {
            Source::Tree(root) => {
                let tree = tree_of(*root);
                if tree.pids.is_empty() && matches!(self.target, Target::Container { .. }) {
                    return None; // the container ended: nothing to say
                }
                let reaped = match self.target {
                    // The child's time moves into the wrapper's `cutime` once it is reaped.
                    Target::Tree(_) => read("/proc/self/stat")
                        .and_then(|s| parse_stat(&s))
                        .map_or(0, |s| s.children_ticks.saturating_sub(self.reaped0)),
                    Target::Container { .. } => 0,
                };
                let ticks = tree.ticks + reaped;
                // No resident page at all: only zombies are left (the job ended, not yet
                // reaped) — their memory is not 0 bytes of a running job.
                let mem = (tree.rss_pages > 0).then_some(tree.rss_pages * page_size());
                Some((ticks as f64 / clock_ticks(), mem))
            }
            Source::Cgroup(files) => read_cgroup(files).map(|(c, m)| (c, Some(m))),
        }
    }

    /// One sample: CPU since the last, memory, system memory, the extra source. The last one
    /// (`last_one`, after the job ended) has what can still be read.
    fn sample(&mut self, last_one: bool) {
        let now = Instant::now();
        let t = (self.clock)();
        let mut values: Vec<(String, f64)> = Vec::new();
        if let Some(src) = self.source.clone() {
            if let Some((cpu, mem)) = self.cpu_and_memory(&src) {
                if let Some((then, used)) = self.last {
                    let dt = now.duration_since(then).as_secs_f64();
                    // A final sample moments after the previous one says nothing.
                    if dt >= 0.05 {
                        values.push((CPU_KEY.into(), ((cpu - used).max(0.0) / dt) * 100.0));
                        self.last = Some((now, cpu.max(used)));
                    }
                } else {
                    self.last = Some((now, cpu));
                }
                if let Some(m) = mem {
                    values.push((RSS_KEY.into(), m as f64));
                }
            }
        }
        if !last_one || !values.is_empty() {
            if let Some(used) = read("/proc/meminfo").and_then(|m| parse_meminfo(&m)) {
                values.push((SYSTEM_MEMORY_KEY.into(), used as f64));
            }
            if let Some(extra) = self.extra.as_mut() {
                values.extend(extra());
            }
        }
        if values.is_empty() {
            return;
        }
        for (k, v) in values {
            let key = self.keys.get(&k);
            self.points.push(MetricPoint {
                key,
                step: Some(self.step),
                value: v,
                time: Some(t),
            });
        }
        self.step += 1;
    }
}

/// The container's main process as the engine reports it (`<engine> inspect`), `None` while it
/// does not run yet. The engine is killed when the sampler is stopped meanwhile.
/// The container's main pid from the engine (`None`: not running yet, or unknown); `Err` when the
/// stop signal came while the engine was asked (the signal is consumed: the caller stops).
fn container_pid(engine: &str, name: &str, rx: &Receiver<()>) -> Result<Option<u32>, Stopped> {
    let Ok(mut child) = std::process::Command::new(engine)
        .args(["inspect", "--format", "{{.State.Pid}}", name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return Ok(None);
    };
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(_) => return Ok(None),
        }
        if !matches!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        ) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Stopped);
        }
    }
    let mut out = String::new();
    let Some(mut stdout) = child.stdout.take() else {
        return Ok(None);
    };
    if std::io::Read::read_to_string(&mut stdout, &mut out).is_err() {
        return Ok(None);
    }
    Ok(out.trim().parse::<u32>().ok().filter(|p| *p > 0))
}

/// The stop signal arrived (and was taken) while waiting for something else.
struct Stopped;

/// Reads a small `/proc` or `/sys` file.
fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Kernel clock ticks a second (`utime` and `stime` are in these).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Bytes in a page (`statm` counts pages).
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// What the sampler needs of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The parent's pid.
    pub ppid: u32,
    /// `utime + stime + cutime + cstime`: the process's own CPU time and that of its children
    /// it has reaped, in clock ticks.
    pub ticks: u64,
    /// `cutime + cstime` alone.
    pub children_ticks: u64,
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let rest = &line[line.rfind(')')? + 1..];
    // After the name: state (3), ppid (4), … utime (14), stime (15), cutime (16), cstime (17).
    let f: Vec<&str> = rest.split_whitespace().take(15).collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    let (utime, stime, cutime, cstime) = (num(11)?, num(12)?, num(13)?, num(14)?);
    Some(ProcStat {
        ppid: f.get(1)?.parse().ok()?,
        ticks: utime + stime + cutime + cstime,
        children_ticks: cutime + cstime,
    })
}

/// Resident pages from `/proc/PID/statm` (its second field).
pub fn parse_statm(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `MemTotal − MemAvailable` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let kib = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let (total, available) = (kib("MemTotal")?, kib("MemAvailable")?);
    Some(total.saturating_sub(available) * 1024)
}

/// `usage_usec` of a cgroup v2 `cpu.stat`, in seconds.
pub fn parse_cpu_stat(text: &str) -> Option<f64> {
    let usec: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()?;
    Some(usec as f64 / 1e6)
}

/// The CPU and memory files of the cgroup a process is in, from its `/proc/PID/cgroup` text:
/// cgroup v2 (`0::/path`) when `root` is the unified hierarchy, else v1's `cpuacct` and
/// `memory` controllers (`N:cpu,cpuacct:/path`, `N:memory:/path`) mounted under `root`.
pub fn cgroup_files(text: &str, root: &Path) -> Option<CgroupFiles> {
    let mut v2 = None;
    let (mut cpu, mut memory) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            v2 = Some(root.join(path));
            continue;
        }
        let list: Vec<&str> = controllers.split(',').collect();
        if list.contains(&"cpuacct") {
            cpu = Some(root.join(controllers).join(path).join("cpuacct.usage"));
        }
        if list.contains(&"memory") {
            memory = Some(
                root.join(controllers)
                    .join(path)
                    .join("memory.usage_in_bytes"),
            );
        }
    }
    if root.join("cgroup.controllers").exists() {
        let dir = v2?;
        return Some(CgroupFiles {
            cpu: dir.join("cpu.stat"),
            v2: true,
            memory: dir.join("memory.current"),
        });
    }
    Some(CgroupFiles {
        cpu: cpu?,
        v2: false,
        memory: memory?,
    })
}

/// CPU seconds and memory bytes of a cgroup.
fn read_cgroup(files: &CgroupFiles) -> Option<(f64, u64)> {
    let cpu_text = std::fs::read_to_string(&files.cpu).ok()?;
    let cpu = if files.v2 {
        parse_cpu_stat(&cpu_text)?
    } else {
        cpu_text.trim().parse::<u64>().ok()? as f64 / 1e9
    };
    let memory = std::fs::read_to_string(&files.memory)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((cpu, memory))
}

/// A process tree as read from `/proc`.
#[derive(Debug, Default)]
struct Tree {
    pids: Vec<u32>,
    ticks: u64,
    rss_pages: u64,
}

/// `root` and its descendants, their CPU ticks and resident pages: found through the kernel's
/// `/proc/PID/task/TID/children` lists, which touch only the tree, else (a kernel without them)
/// by one pass over every `/proc/*/stat`.
fn tree_of(root: u32) -> Tree {
    children_tree(root).unwrap_or_else(|| scanned_tree(root))
}

/// [`tree_of`] through the `children` lists; `None` when the kernel has none.
fn children_tree(root: u32) -> Option<Tree> {
    let mut tree = Tree::default();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let Some(stat) = read(&format!("/proc/{pid}/stat")).and_then(|l| parse_stat(&l)) else {
            continue; // gone since its parent listed it
        };
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut listed = false;
        for t in tasks.flatten() {
            let Ok(kids) = std::fs::read_to_string(t.path().join("children")) else {
                continue;
            };
            listed = true;
            todo.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok())
                    .filter(|k| *k != pid && !tree.pids.contains(k)),
            );
        }
        if !listed {
            return None;
        }
        tree.ticks += stat.ticks;
        tree.rss_pages += read(&format!("/proc/{pid}/statm"))
            .and_then(|t| parse_statm(&t))
            .unwrap_or(0);
        tree.pids.push(pid);
    }
    Some(tree)
}

/// [`tree_of`] by one pass over every `/proc/*/stat`.
fn scanned_tree(root: u32) -> Tree {
    let mut stats: HashMap<u32, ProcStat> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(s) = read(&format!("/proc/{pid}/stat")).and_then(|l| parse_stat(&l)) {
                stats.insert(pid, s);
            }
        }
    }
    let mut tree = Tree::default();
    for pid in descendants(root, &stats) {
        let s = stats[&pid];
        tree.ticks += s.ticks;
        tree.rss_pages += read(&format!("/proc/{pid}/statm"))
            .and_then(|t| parse_statm(&t))
            .unwrap_or(0);
        tree.pids.push(pid);
    }
    tree
}

/// `root` (when it is in `stats`) and every process below it.
fn descendants(root: u32, stats: &HashMap<u32, ProcStat>) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, s) in stats {
        children.entry(s.ppid).or_default().push(*pid);
    }
    let mut out = Vec::new();
    if !stats.contains_key(&root) {
        return out;
    }
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        out.push(p);
        if let Some(c) = children.get(&p) {
            todo.extend(c.iter().copied().filter(|c| *c != p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line of a process whose name holds spaces and parentheses (recorded from a
    /// `cp /bin/sleep '/tmp/a) (b'` run; the kernel cuts names at 15 bytes).
    const STAT: &str = "4242 (a) (b) x) S 4200 4242 4200 34816 4242 4194304 120 0 0 0 \
                        250 37 12 3 20 0 1 0 987654 8491008 210 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.ppid, 4200);
        assert_eq!(s.ticks, 250 + 37 + 12 + 3);
        assert_eq!(s.children_ticks, 15);
        assert_eq!(parse_stat("4242 (trunc"), None);
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        // Our own stat line parses too.
        let me = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn statm_meminfo_and_cpu_stat() {
        assert_eq!(parse_statm("2073 210 180 2 0 118 0\n"), Some(210));
        assert_eq!(parse_statm("2073\n"), None);
        let meminfo = "MemTotal:       16318480 kB\nMemFree:         1021440 kB\n\
                       MemAvailable:   12318480 kB\nBuffers:          310000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(4_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None);
        let cpu = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n\
                   nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
        assert_eq!(parse_cpu_stat(cpu), Some(2.5));
        assert_eq!(parse_cpu_stat("user_usec 1\n"), None);
    }

    #[test]
    fn cgroup_files_for_v1_and_v2() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = "11:memory:/libpod_parent/libpod-abc\n4:cpu,cpuacct:/libpod_parent/libpod-abc\n\
                  1:name=systemd:/x\n0::/\n";
        let f = cgroup_files(v1, dir.path()).unwrap();
        assert!(!f.v2);
        assert_eq!(
            f.cpu,
            dir.path()
                .join("cpu,cpuacct/libpod_parent/libpod-abc/cpuacct.usage")
        );
        assert_eq!(
            f.memory,
            dir.path()
                .join("memory/libpod_parent/libpod-abc/memory.usage_in_bytes")
        );
        assert_eq!(cgroup_files("0::/user.slice/x\n", dir.path()), None);
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let f = cgroup_files("0::/machine.slice/libpod-abc.scope\n", dir.path()).unwrap();
        assert!(f.v2);
        assert_eq!(
            f.memory,
            dir.path()
                .join("machine.slice/libpod-abc.scope/memory.current")
        );
        // Read back from recorded files.
        let cg = dir.path().join("machine.slice/libpod-abc.scope");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cpu.stat"), "usage_usec 1500000\nuser_usec 1\n").unwrap();
        std::fs::write(cg.join("memory.current"), "7340032\n").unwrap();
        assert_eq!(read_cgroup(&f), Some((1.5, 7_340_032)));
    }

    #[test]
    fn descendants_follow_parents_and_skip_others() {
        let st = |ppid| ProcStat {
            ppid,
            ticks: 1,
            children_ticks: 0,
        };
        let stats: HashMap<u32, ProcStat> = [(10, st(1)), (11, st(10)), (12, st(11)), (13, st(1))]
            .into_iter()
            .collect();
        let mut d = descendants(10, &stats);
        d.sort();
        assert_eq!(d, [10, 11, 12]);
        assert!(descendants(99, &stats).is_empty());
    }

    /// A shell with two children: the `children` lists and the full scan find the same tree.
    #[test]
    fn both_ways_of_finding_the_tree_agree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut found = Vec::new();
        for _ in 0..50 {
            found = scanned_tree(pid).pids;
            if found.len() == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        found.sort();
        assert_eq!(found.len(), 3, "{found:?}");
        if let Some(t) = children_tree(pid) {
            let mut listed = t.pids;
            listed.sort();
            assert_eq!(listed, found);
            assert!(t.rss_pages > 0);
        }
        let mut all = tree_of(pid).pids;
        all.sort();
        assert_eq!(all, found);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(tree_of(pid).pids.is_empty());
    }

    /// Stopped while the engine has not answered (a container that never ran, an engine that
    /// hangs), the sampler kills the engine and ends at once, and keeps ending at once however
    /// many times it had looked.
    #[test]
    fn a_container_never_found_stops_at_once_and_the_engine_is_killed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let engine = dir.path().join("engine");
        let marker = dir.path().join("started");
        std::fs::write(
            &engine,
            format!(
                "#!/bin/sh\necho $$ >> {}\nexec sleep 30\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = start(
            Target::Container {
                engine: engine.to_str().unwrap().into(),
                name: "repro-x".into(),
            },
            Duration::from_millis(100),
            Box::new(|| 0.0),
            None,
        );
        std::thread::sleep(Duration::from_millis(400));
        let t = Instant::now();
        let sampled = s.stop();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert!(sampled.points.is_empty() && sampled.source.is_none());
        let pids = std::fs::read_to_string(&marker).unwrap();
        for pid in pids.split_whitespace() {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .unwrap_or_default()
                        .contains(") Z"),
                "the engine {pid} still runs"
            );
        }
    }

    /// A busy child sampled a few times: CPU near one core, its memory, the system's, the extra
    /// source's values under their keys, steps counting up with the times; stopping is prompt.
    #[test]
    fn a_busy_tree_is_sampled_with_the_extra_source() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        let fake_gpu: ExtraSource =
            Box::new(|| vec![(gpu_utilization_key(0), 37.0), (gpu_memory_key(0), 2.5e9)]);
        let s = start(
            Target::Tree(child.id()),
            Duration::from_millis(200),
            Box::new(move || 1000.0 + t0.elapsed().as_secs_f64()),
            Some(fake_gpu),
        );
        std::thread::sleep(Duration::from_millis(900));
        let stopping = Instant::now();
        let sampled = s.stop();
        assert_eq!(
            sampled.source.as_deref(),
            Some(format!("the process tree of pid {}", child.id()).as_str())
        );
        let points = sampled.points;
        assert!(
            stopping.elapsed() < Duration::from_millis(150),
            "stop waited"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let of =
            |k: &str| -> Vec<&MetricPoint> { points.iter().filter(|p| &*p.key == k).collect() };
        let cpu = of(CPU_KEY);
        assert!(cpu.len() >= 3, "{points:?}");
        assert!(
            cpu.iter().any(|p| p.value > 30.0) && cpu.iter().all(|p| p.value < 250.0),
            "{cpu:?}"
        );
        assert!(of(RSS_KEY).iter().all(|p| p.value > 0.0));
        assert!(of(SYSTEM_MEMORY_KEY).iter().all(|p| p.value > 0.0));
        let gpu = of("sys/gpu0_utilization_percent");
        assert!(gpu.len() >= 3 && gpu.iter().all(|p| p.value == 37.0));
        assert_eq!(of("sys/gpu0_memory_used_bytes")[0].value, 2.5e9);
        let steps: Vec<i64> = cpu.iter().map(|p| p.step.unwrap()).collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        let times: Vec<f64> = cpu.iter().map(|p| p.time.unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]) && times[0] > 1000.0);
    }

    /// A stop that arrives while the engine is being asked for the container (a slow or hung
    /// `inspect`, or a container that never started) ends the sampler at once; it used to be
    /// taken by the wait for the engine and the sampler then waited for a second one forever.
    #[test]
    fn a_stop_while_the_engine_is_asked_ends_the_sampler() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("repro-sys-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let engine = dir.join("slow-engine");
        std::fs::write(&engine, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sampler = start(
            Target::Container {
                engine: engine.to_string_lossy().into_owned(),
                name: "never-started".into(),
            },
            Duration::from_secs(1),
            Box::new(|| 0.0),
            None,
        );
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(sampler.stop());
        });
        let got = rx.recv_timeout(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
        let sampled = got.expect("the sampler did not stop");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(sampled.points.is_empty() && sampled.source.is_none());
    }
}
