//! Container engines for tests: podman with its own config and storage in a temp dir, and a
//! private `dockerd` per test. Both reach a loopback `Registry` and run `--network=none`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::registry::{kill_with_parent, Registry};
use super::{require_tool, skip_or_fail, tool_or_skip};

/// Storage driver for test podman storage. `vfs` needs no kernel overlay support and leaves no
/// mounts behind (so temp dirs delete cleanly); test images are tiny so its copies are cheap.
/// `REPRO_TEST_STORAGE_DRIVER` overrides it.
pub fn storage_driver() -> String {
    std::env::var("REPRO_TEST_STORAGE_DRIVER").unwrap_or_else(|_| "vfs".to_string())
}

/// Writes `dir/containers.conf`: runtime runc, cgroupfs, file events, no network and the
/// ulimits podman needs on this kind of machine; state dirs and locks live under `dir`.
/// File locks matter: with the default shared-memory locks, each fresh podman state "refreshes"
/// and frees every lock in the machine-wide segment, under the feet of concurrent tests.
pub fn write_containers_conf(dir: &Path) -> PathBuf {
    let path = dir.join("containers.conf");
    let tmp = dir.join("podman-tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir podman tmp");
    std::fs::write(
        &path,
        format!(
            "[containers]\n\
             netns = \"none\"\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             log_driver = \"k8s-file\"\n\
             \n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{events}\"\n\
             tmp_dir = \"{tmp}\"\n\
             lock_type = \"file\"\n\
             volume_path = \"{volumes}\"\n",
            events = dir.join("events.log").display(),
            tmp = tmp.display(),
            volumes = dir.join("volumes").display(),
        ),
    )
    .expect("write containers.conf");
    path
}

/// Writes `dir/registries.conf` with no unqualified search registries and each of `insecure`
/// ("127.0.0.1:PORT") marked insecure: podman 4.3 does not treat loopback as plain HTTP.
pub fn write_registries_conf(dir: &Path, insecure: &[&str]) -> PathBuf {
    let path = dir.join("registries.conf");
    let mut text = String::from("unqualified-search-registries = []\n");
    for location in insecure {
        text.push_str(&format!(
            "\n[[registry]]\nlocation = \"{location}\"\ninsecure = true\n"
        ));
    }
    std::fs::write(&path, text).expect("write registries.conf");
    path
}

/// Writes `dir/storage.conf` putting podman's images and containers under `dir`.
pub fn write_storage_conf(dir: &Path) -> PathBuf {
    let path = dir.join("storage.conf");
    std::fs::write(
        &path,
        format!(
            "[storage]\ndriver = \"{}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            storage_driver(),
            dir.join("graph").display(),
            dir.join("run").display(),
        ),
    )
    .expect("write storage.conf");
    path
}

/// A private podman setup: config files and storage in a temp dir, so tests neither see nor
/// touch the machine's images and every test pulls afresh.
pub struct Podman {
    dir: TempDir,
    env: Vec<(String, OsString)>,
}

impl Podman {
    /// Writes the config files, trusting `insecure_registries` ("127.0.0.1:PORT") over HTTP.
    pub fn new(insecure_registries: &[&str]) -> Podman {
        require_tool("podman");
        require_tool("runc");
        let dir = tempfile::Builder::new()
            .prefix("repro-podman-")
            .tempdir()
            .expect("temp dir for podman");
        let env = vec![
            (
                "CONTAINERS_CONF".to_string(),
                write_containers_conf(dir.path()).into_os_string(),
            ),
            (
                "CONTAINERS_REGISTRIES_CONF".to_string(),
                write_registries_conf(dir.path(), insecure_registries).into_os_string(),
            ),
            (
                "CONTAINERS_STORAGE_CONF".to_string(),
                write_storage_conf(dir.path()).into_os_string(),
            ),
        ];
        Podman { dir, env }
    }

    /// Environment variables a child process (e.g. `repro`) needs so that a plain
    /// `podman run --rm IMAGE@sha256:… cmd` uses this setup.
    pub fn env(&self) -> Vec<(String, OsString)> {
        self.env.clone()
    }

    /// A `podman` command with `env()` applied.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The temp dir holding config and storage.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A private `dockerd` (own socket, data root and exec root in a temp dir, no bridge, no
/// iptables, vfs storage), stopped with SIGTERM on drop.
pub struct Dockerd {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
}

impl Dockerd {
    /// Starts dockerd and waits until it answers `/_ping`; `None` when dockerd or the docker
    /// CLI is not installed or we are not root: a `SKIPPED:` line locally, a failure under CI
    /// ([`skip_or_fail`]), so the caller just returns on `None`.
    pub fn start() -> Option<Dockerd> {
        for tool in ["dockerd", "docker", "containerd"] {
            if !tool_or_skip(tool, "the docker checks need it") {
                return None;
            }
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip_or_fail("dockerd needs root; the docker checks did not run");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("repro-dockerd-")
            .tempdir()
            .expect("temp dir for dockerd");
        let d = dir.path();
        let socket = d.join("docker.sock");
        std::fs::write(d.join("daemon.json"), "{}").expect("write daemon.json");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("dockerd log");
        let mut cmd = Command::new("dockerd");
        cmd.args([
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--storage-driver=vfs",
            "--shutdown-timeout=5",
        ])
        .arg("--config-file")
        .arg(d.join("daemon.json"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .arg("--data-root")
        .arg(d.join("data"))
        .arg("--exec-root")
        .arg(d.join("exec"))
        .arg("--pidfile")
        .arg(d.join("dockerd.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
        kill_with_parent(&mut cmd, libc::SIGTERM);
        let child = cmd.spawn().expect("spawn dockerd");
        let mut daemon = Dockerd { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("dockerd exited with {status}:\n{}", daemon.log());
            }
            if daemon.ping() {
                return Some(daemon);
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60s:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.") && answer.contains(" 200 ") && answer.ends_with("OK")
    }

    /// "unix:///…/docker.sock".
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Environment a child process needs to talk to this daemon (`DOCKER_HOST`).
    pub fn env(&self) -> Vec<(String, OsString)> {
        vec![("DOCKER_HOST".to_string(), self.docker_host().into())]
    }

    /// A `docker` command with `DOCKER_HOST` set to this daemon.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.docker_host());
        cmd
    }

    /// The daemon's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd and unmount; SIGKILL only as a last resort.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: the pid is our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The setup most container tests share: a loopback registry holding a fresh busybox image
/// pushed as `repo:tag` and, unless made with [`PushedBusybox::in_registry`], a private podman
/// that trusts the registry over plain HTTP.
pub struct PushedBusybox {
    pub registry: Registry,
    /// `REGISTRY/REPO:TAG`.
    pub tag_ref: String,
    /// The manifest digest the registry reports.
    pub digest: String,
    /// `REGISTRY/REPO@DIGEST`.
    pub image: String,
    podman: Option<Podman>,
}

impl PushedBusybox {
    /// Registry, busybox pushed as `repo:tag`, and a podman trusting the registry.
    pub fn new(repo: &str, tag: &str) -> PushedBusybox {
        let mut p = PushedBusybox::in_registry(repo, tag);
        p.podman = Some(Podman::new(&[&p.registry.addr()]));
        p
    }

    /// Registry and busybox pushed as `repo:tag`, no engine (docker tests, registry-only tests).
    pub fn in_registry(repo: &str, tag: &str) -> PushedBusybox {
        let registry = Registry::start();
        let digest = registry.push_busybox(repo, tag);
        PushedBusybox {
            tag_ref: registry.reference(repo, tag),
            image: registry.reference(repo, &digest),
            digest,
            registry,
            podman: None,
        }
    }

    /// The private podman (made by [`PushedBusybox::new`]).
    pub fn podman(&self) -> &Podman {
        self.podman
            .as_ref()
            .expect("PushedBusybox::in_registry has no podman; use PushedBusybox::new")
    }

    /// The podman's environment, for `repro` children.
    pub fn podman_env(&self) -> Vec<(String, OsString)> {
        self.podman().env()
    }

    /// `podman pull` of the pushed image into the private podman's store.
    pub fn pull(&self) {
        let out = self
            .podman()
            .command()
            .args(["pull", "-q", &self.image])
            .output()
            .expect("spawn podman pull");
        super::assert_ok_for(&out, "podman pull");
    }
}

/// `repro run` in `repo` of `cat README` in the busybox image `image` of a plain-HTTP loopback
/// registry `registry` (an address), reached with `--insecure-registry` only (podman's own
/// configuration lists no insecure registry); asserts it succeeded.
pub fn run_with_insecure_flag(
    env: &super::TestEnv,
    repo: &Path,
    podman: &Podman,
    registry: &str,
    image: &str,
) -> std::process::Output {
    let out = env
        .repro()
        .current_dir(repo)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["run", "-q", "--engine", "podman", "--image", image])
        .args(["--insecure-registry", registry])
        .args([
            "--engine-arg=--network=none",
            "--",
            "/bin/busybox",
            "cat",
            "README",
        ])
        .output()
        .unwrap();
    super::assert_ok_for(&out, "repro run --insecure-registry");
    out
}
