//! A real one-node Slurm cluster on 127.0.0.1 (Debian's slurm-wlm: munged, slurmctld, slurmd),
//! configured by `scripts/slurm.sh conf` in a temp dir with its own munge key and socket, so
//! several test binaries can run clusters side by side. Started once per test binary (`shared`)
//! and stopped by pid when the binary exits; the daemons also die with the test process
//! (PR_SET_PDEATHSIG) if it is killed outright.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use repro::slurm::{Client, JobStatus, Submit};

use super::registry::kill_with_parent;
use super::require_tool;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm.sh");

/// A running cluster: its directory (slurm.conf, logs, job output) and daemon pids.
pub struct Slurm {
    dir: PathBuf,
    pids: Vec<u32>,
}

/// Pids and directory of the shared cluster, for the exit handler.
static SHARED_STOP: Mutex<Option<(Vec<u32>, PathBuf)>> = Mutex::new(None);

/// The cluster shared by every test of this binary, started on first use.
pub fn shared() -> &'static Slurm {
    static SHARED: OnceLock<Slurm> = OnceLock::new();
    SHARED.get_or_init(|| {
        // PR_SET_PDEATHSIG fires when the *thread* that spawned a child exits, and test threads
        // end with their test: spawn from a thread that lives as long as the process.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("slurm-keeper".into())
            .spawn(move || {
                let started = std::panic::catch_unwind(Slurm::start_children);
                match started {
                    Ok((dir, children)) => {
                        let pids = children.iter().map(Child::id).collect::<Vec<_>>();
                        let _ = tx.send(Ok((dir, pids)));
                        // Keep the Child handles (and this thread) alive until the process ends.
                        let _keep = children;
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        let _ = tx.send(Err(msg));
                    }
                }
            })
            .expect("spawn slurm keeper thread");
        let (dir, pids) = rx
            .recv()
            .expect("slurm keeper thread")
            .unwrap_or_else(|e| panic!("{e}"));
        *SHARED_STOP.lock().unwrap() = Some((pids.clone(), dir.clone()));
        extern "C" fn stop_shared() {
            if let Ok(mut guard) = SHARED_STOP.lock() {
                if let Some((pids, dir)) = guard.take() {
                    stop(&pids, &dir);
                }
            }
        }
        // SAFETY: registering a plain extern "C" function; it runs at normal process exit.
        unsafe { libc::atexit(stop_shared) };
        Slurm { dir, pids }
    })
}

impl Slurm {
    /// A private cluster for one test; stopped when dropped.
    pub fn start() -> Slurm {
        let (dir, children) = Slurm::start_children();
        Slurm {
            dir,
            pids: children.iter().map(Child::id).collect(),
        }
    }

    fn start_children() -> (PathBuf, Vec<Child>) {
        for tool in [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "sacct",
            "sinfo",
        ] {
            require_tool(tool);
        }
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the Slurm tests need root: munged runs as the munge user and slurmd starts jobs as their owner"
        );
        let mut last = String::new();
        // A free port can be taken between probing and binding; retry with fresh ones.
        for _ in 0..3 {
            match try_start() {
                Ok(started) => return started,
                Err(e) => last = e,
            }
        }
        panic!("the Slurm test cluster did not start: {last}");
    }

    /// The cluster's directory (slurm.conf, log/, jobcomp.txt).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its slurm.conf: set `SLURM_CONF` to this for Slurm's commands.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// A `repro::slurm` client for this cluster.
    pub fn client(&self) -> Client {
        Client::with_conf(self.conf())
    }

    /// A Slurm command (`squeue`, `sacct`, `scancel`…) pointed at this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf()).stdin(Stdio::null());
        c
    }

    /// Submits `script` from `workdir` with extra sbatch `args`; returns the job id.
    pub fn submit(&self, workdir: &Path, args: &[&str], script: &str) -> String {
        self.client()
            .submit(&Submit {
                script: script.to_string(),
                sbatch_args: args.iter().map(Into::into).collect(),
                workdir: Some(workdir.to_path_buf()),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("sbatch: {e:?}\n{}", self.logs()))
    }

    /// Polls until every task of `job_id` has a final state (at most `timeout`).
    pub fn wait_final(&self, job_id: &str, timeout: Duration) -> Vec<JobStatus> {
        self.client()
            .wait(job_id, Duration::from_millis(200), Some(timeout), |_| {})
            .unwrap_or_else(|e| panic!("waiting for job {job_id}: {e:?}\n{}", self.logs()))
    }

    /// Polls until `job_id` is RUNNING.
    pub fn wait_running(&self, job_id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let jobs = self.client().poll(job_id).unwrap();
            if jobs
                .iter()
                .any(|j| j.state == repro::slurm::JobState::Running)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} never ran: {jobs:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tails of the daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        logs(&self.dir)
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        stop(&self.pids, &self.dir);
    }
}

fn logs(dir: &Path) -> String {
    let mut s = String::new();
    for f in ["log/slurmctld.log", "log/slurmd.log", "munge/munged.log"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        s.push_str(&format!("== {f}\n"));
        for l in &lines[lines.len().saturating_sub(15)..] {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

/// Cancels what is left, stops the daemons by pid (SIGTERM, then SIGKILL) and removes the
/// cluster's directory.
fn stop(pids: &[u32], dir: &Path) {
    // Jobs still running would outlive slurmd (slurmstepd is not its child, and it lingers
    // when it cannot report the end of its job): cancel them and let them end first.
    let slurm = |program: &str, args: &[&str]| {
        Command::new(program)
            .env("SLURM_CONF", dir.join("slurm.conf"))
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
    };
    let _ = slurm("scancel", &["--full", "--user", "root"]);
    wait_for(Duration::from_secs(5), || {
        slurm("squeue", &["--noheader", "--format=%A"])
            .map(|o| o.stdout.iter().all(u8::is_ascii_whitespace))
            .unwrap_or(true)
    });
    // slurmd first, then the controller, then munge.
    for pid in pids.iter().rev() {
        let pid = *pid as libc::pid_t;
        // SAFETY: plain kill(2) on pids this module spawned.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only checks existence; waitpid reaps our own child.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn munge_ids() -> Result<(u32, u32), String> {
    let name = std::ffi::CString::new("munge").unwrap();
    // SAFETY: getpwnam returns a pointer into static storage or null; read it at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("no `munge` user: install munge (slurm-wlm depends on it)".into());
    }
    // SAFETY: pw is non-null and points at a valid passwd entry.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn try_start() -> Result<(PathBuf, Vec<Child>), String> {
    let dir = tempfile::Builder::new()
        .prefix("repro-slurm-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let fail = |children: &mut Vec<Child>, msg: String| {
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        let msg = format!("{msg}\n{}", logs(&dir));
        stop(&pids, &dir);
        for c in children.iter_mut() {
            let _ = c.wait();
        }
        Err(msg)
    };
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg("conf")
        .arg(&dir)
        .env("SLURMCTLD_PORT", free_port()?.to_string())
        .env("SLURMD_PORT", free_port()?.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("bash {SCRIPT}: {e}"))?;
    if !out.status.success() {
        return fail(
            &mut Vec::new(),
            format!(
                "{SCRIPT} conf failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let conf = dir.join("slurm.conf");
    let munge = dir.join("munge");
    let (uid, gid) = munge_ids()?;
    let mut children = Vec::new();

    let mut cmd = Command::new("munged");
    cmd.arg("--foreground")
        .arg(format!("--key-file={}", munge.join("munge.key").display()))
        .arg(format!("--socket={}", munge.join("munge.socket").display()))
        .arg(format!("--pid-file={}", munge.join("munged.pid").display()))
        .arg(format!("--log-file={}", munge.join("munged.log").display()))
        .arg(format!(
            "--seed-file={}",
            munge.join("munged.seed").display()
        ))
        // std drops root's supplementary groups (setgroups(0)) when uid is set.
        .uid(uid)
        .gid(gid);
    match spawn(cmd) {
        Ok(c) => children.push(c),
        Err(e) => return fail(&mut children, e),
    }
    let socket = munge.join("munge.socket");
    if !wait_for(Duration::from_secs(10), || socket.exists()) {
        return fail(&mut children, "munged did not create its socket".into());
    }

    let mut cmd = Command::new("slurmctld");
    cmd.args(["-D", "-i", "-f"]).arg(&conf);
    match spawn(cmd) {
        Ok(c) => children.push(c),
        Err(e) => return fail(&mut children, e),
    }
    let mut cmd = Command::new("slurmd");
    cmd.args(["-D", "-N", "localhost", "-f"]).arg(&conf);
    match spawn(cmd) {
        Ok(c) => children.push(c),
        Err(e) => return fail(&mut children, e),
    }

    let mut last_state = String::new();
    let idle = wait_for(Duration::from_secs(30), || {
        if let Some(exited) = children
            .iter_mut()
            .find_map(|c| c.try_wait().ok().flatten())
        {
            last_state = format!("a daemon exited with {exited}");
            return true;
        }
        let out = Command::new("sinfo")
            .env("SLURM_CONF", &conf)
            .args(["--noheader", "--Node", "--format=%T"])
            .stdin(Stdio::null())
            .output();
        last_state = out
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        last_state == "idle"
    });
    if !idle || last_state != "idle" {
        return fail(
            &mut children,
            format!("the node did not become idle (last: {last_state:?})"),
        );
    }
    Ok((dir, children))
}

fn spawn(mut cmd: Command) -> Result<Child, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    kill_with_parent(&mut cmd, libc::SIGTERM);
    cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))
}

fn wait_for(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A real network filesystem for the shared-filesystem tests: sshfs (FUSE over SFTP) mounted from
/// a private `sshd` on 127.0.0.1 with its own host and user keys. The kernel here has no NFS, so
/// this is the network filesystem the tests can mount. Unmounted and stopped on drop.
pub struct Sshfs {
    dir: tempfile::TempDir,
    sshd: Child,
}

impl Sshfs {
    /// Starts sshd and mounts its `export/` directory at `mnt/`.
    pub fn mount() -> Sshfs {
        for tool in ["sshfs", "ssh-keygen", "fusermount"] {
            require_tool(tool);
        }
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing; run .ci/install.sh (openssh-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("repro-sshfs-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for key in ["hostkey", "userkey"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "ssh-keygen: {out:?}");
        }
        std::fs::copy(d.join("userkey.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all(d.join("export")).unwrap();
        std::fs::create_dir_all(d.join("mnt")).unwrap();
        // sshd's privilege-separation directory (systemd creates it on a normal boot).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port().unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\n",
                hk = d.join("hostkey").display(),
                ak = d.join("authorized_keys").display(),
                d = d.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        kill_with_parent(&mut cmd, libc::SIGTERM);
        let sshd = cmd.spawn().expect("spawn sshd");
        let mut sshfs = Sshfs { dir, sshd };
        let d = sshfs.dir.path().to_path_buf();
        let mounted = wait_for(Duration::from_secs(15), || {
            Command::new("sshfs")
                .arg("-p")
                .arg(port.to_string())
                .arg("-o")
                .arg(format!(
                    "IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes",
                    d.join("userkey").display()
                ))
                .arg(format!("root@127.0.0.1:{}", d.join("export").display()))
                .arg(d.join("mnt"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !mounted {
            let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
            let _ = sshfs.sshd.kill();
            panic!("sshfs did not mount from the loopback sshd: {log}");
        }
        sshfs
    }

    /// The mount point (a network filesystem).
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// The exported directory, on the local disk behind the mount.
    pub fn export(&self) -> PathBuf {
        self.dir.path().join("export")
    }
}

impl Drop for Sshfs {
    fn drop(&mut self) {
        let _ = Command::new("fusermount")
            .arg("-u")
            .arg(self.mnt())
            .stdin(Stdio::null())
            .status();
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}
