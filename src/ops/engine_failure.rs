//! What a container engine's failure means. One mapping from the engine's own message (pull,
//! create, start) to a cause and the hint for it, shared by `repro run` (its `error` status)
//! and `repro doctor` (its probe container); and the throw-away probe container that brings
//! the message back when the engine's stderr went straight to the user.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::script::plan::{Bindings, EnginePlan, Word};

/// Why the engine failed, read from its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The runtime could not set resource limits (rootless podman, podman in a container).
    Rlimits,
    /// The runtime could not create or join a cgroup, or set a cgroup limit.
    Cgroups,
    /// Rootless storage: too few sub-UIDs/GIDs, overlay or fuse-overlayfs missing.
    RootlessStorage,
    /// The registry speaks plain HTTP and the engine asked for HTTPS.
    PlainHttp,
    /// The registry's certificate is not trusted.
    Certificate,
    /// The registry wants credentials.
    Credentials,
    /// The registry no longer has the digest and no archive of it is recorded.
    ImageGone,
    /// The command is not in the image or not executable there.
    NotExecutable,
    /// Anything else.
    Unknown,
}

impl Cause {
    /// The cause of an engine failure from its message (stderr). Order matters: an rlimit
    /// failure ends in "OCI permission denied" like a command that is not executable.
    pub fn of(message: &str) -> Cause {
        let m = message.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if any(&["rlimit", "ulimit"]) {
            Cause::Rlimits
        } else if any(&[
            "cgroup",
            "systemd not running on this host",
            "cannot open sd-bus",
        ]) {
            Cause::Cgroups
        } else if any(&[
            "insufficient uids or gids",
            "not enough ids available",
            "/etc/subuid",
            "newuidmap",
            "newgidmap",
            "fuse-overlayfs",
            "overlay is not supported",
            "'overlay' is not supported",
            "kernel does not support overlay",
            "creating overlay mount",
        ]) {
            Cause::RootlessStorage
        } else if m.contains("http response to https client") {
            Cause::PlainHttp
        } else if any(&["x509", "certificate", "tls:"]) {
            Cause::Certificate
        } else if any(&[
            "unauthorized",
            "authentication required",
            "denied",
            "credential",
        ]) && !m.contains("permission denied")
        {
            Cause::Credentials
        } else if any(&[
            "no archive of it is recorded",
            "no recorded archive provided",
        ]) {
            Cause::ImageGone
        } else if any(&[
            "executable file not found",
            "command that was not found",
            "exec format error",
        ]) || (m.contains("exec: \"")
            && any(&["no such file or directory", "permission denied"]))
        {
            Cause::NotExecutable
        } else {
            Cause::Unknown
        }
    }

    /// A short name for JSON (`rlimits`, `cgroups`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Rlimits => "rlimits",
            Cause::Cgroups => "cgroups",
            Cause::RootlessStorage => "rootless-storage",
            Cause::PlainHttp => "plain-http",
            Cause::Certificate => "certificate",
            Cause::Credentials => "credentials",
            Cause::ImageGone => "image-gone",
            Cause::NotExecutable => "not-executable",
            Cause::Unknown => "unknown",
        }
    }

    /// What to do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Cause::Rlimits => "the container runtime may not set the default resource limits here (rootless podman, or podman inside a container): give the engine limits it may set, e.g. --engine-arg=--ulimit=nofile=1024:1024 --engine-arg=--ulimit=nproc=1024:1024, or engine_args = [\"--ulimit=nofile=1024:1024\", \"--ulimit=nproc=1024:1024\"] in the configuration (or default_ulimits in containers.conf) — see docs/faq.md",
            Cause::Cgroups => "the container runtime cannot use cgroups here: without systemd set cgroup_manager = \"cgroupfs\" in containers.conf (or --engine-arg=--cgroup-manager=cgroupfs); rootless without cgroup delegation, drop memory/CPU limits or add --engine-arg=--cgroups=disabled",
            Cause::RootlessStorage => "rootless storage is not set up: give your user sub-UIDs/GIDs in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER) and run `podman system migrate`; without kernel overlay support install fuse-overlayfs or set driver = \"vfs\" in storage.conf",
            Cause::PlainHttp => "the registry speaks plain HTTP: pass --insecure-registry HOST:PORT or list it in insecure_registries in the configuration (podman then pulls with --tls-verify=false; docker: list it in \"insecure-registries\" of /etc/docker/daemon.json) — see docs/faq.md",
            Cause::Certificate => "the registry's certificate is not trusted: pass --ca-cert CA.crt (podman gets --cert-dir), or put the CA in /etc/containers/certs.d/HOST:PORT/ca.crt (docker: /etc/docker/certs.d/HOST:PORT/ca.crt) — see docs/faq.md",
            Cause::Credentials => "the registry wants credentials: log in with `podman login HOST` / `docker login HOST`",
            Cause::ImageGone => "the image is gone from the registry: while a registry still has an image, keep a copy with `repro image archive ID --to DIR` (a re-run then falls back to it); `repro audit` lists the runs at risk",
            Cause::NotExecutable => "the command could not be executed in the image (not found there, or not executable): check the first word of the command against the image",
            Cause::Unknown => "check that the engine works (`repro doctor`) and that the image can be pulled by hand",
        }
    }
}

/// The hint for an engine's pull or start failure, from its message.
pub fn engine_hint(message: &str) -> String {
    Cause::of(message).hint().to_string()
}

/// What an engine command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The message lines of stderr, trimmed (warnings included: they often name the cause).
    pub fn message(&self) -> String {
        self.stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs `cmd` with stdin closed and both pipes read, killing it after `timeout`. `Err` when it
/// cannot start or does not finish in time. (`exec::run` passes stdio through; this captures.)
pub fn run_captured(cmd: &mut Command, timeout: Duration) -> Result<Captured, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", timeout.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(Captured {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Where the probe container gets its command: the image's own, or a path that exists in no
/// image (the runtime then fails on it only after everything else was set up).
pub const MISSING_ENTRYPOINT: &str = "/.repro-probe-no-such-file";

/// The `run` arguments of a throw-away container with the plan's flags (its engine flags,
/// mounts, workdir, env names): named `name`, no TTY, `src` mounted at the workdir, and either
/// the plan's argv or, with `entrypoint`, that entrypoint and no argv.
pub fn probe_args(
    plan: &EnginePlan,
    name: &str,
    entrypoint: Option<&str>,
    src: &Path,
) -> Vec<OsString> {
    let mut p = plan.clone();
    let mut words = Vec::with_capacity(p.run.len() + 1);
    for w in p.run {
        match w {
            Word::Lit(s) if s == "-t" => {}
            Word::Lit(s) if s.starts_with("--name=") => {
                words.push(Word::Lit(format!("--name={name}")))
            }
            Word::Image => {
                if let Some(e) = entrypoint {
                    words.push(Word::Lit(format!("--entrypoint={e}")));
                }
                words.push(Word::Image);
            }
            w => words.push(w),
        }
    }
    if !words
        .iter()
        .any(|w| matches!(w, Word::Lit(s) if s.starts_with("--name=")))
    {
        words.insert(1, Word::Lit(format!("--name={name}")));
    }
    p.run = words;
    if entrypoint.is_some() {
        p.argv.clear();
    }
    let b = Bindings {
        src: src.to_path_buf(),
        ..Bindings::default()
    };
    p.run_args(&b)
}

/// Runs `<engine> ARGS` for a probe container named `name`; removes the container when the
/// deadline passes (it may still be starting).
pub fn run_probe(
    engine: &str,
    args: &[OsString],
    name: &str,
    timeout: Duration,
) -> Result<Captured, String> {
    let res = run_captured(Command::new(engine).args(args), timeout);
    if res.is_err() {
        let _ = run_captured(
            Command::new(engine).args(["rm", "--force", name]),
            Duration::from_secs(30),
        );
    }
    res
}

/// The hint for an engine that exited `code` (125–127) before `plan`'s container started. The
/// engine's message went to the user's terminal, so a throw-away container with the same flags
/// and an entrypoint that exists nowhere asks the runtime again: a runtime failure (rlimits,
/// cgroups, storage) shows in its message; a "not found" for that entrypoint means the runtime
/// works and the recorded command was the problem.
pub fn start_hint(plan: &EnginePlan, code: i32, debug: &dyn Fn(&str)) -> String {
    let probed = probe_cause(plan, debug);
    match (probed, code) {
        (Some(Cause::NotExecutable), 126 | 127) => Cause::NotExecutable.hint().to_string(),
        (Some(c), _) if c != Cause::NotExecutable && c != Cause::Unknown => c.hint().to_string(),
        (None | Some(Cause::Unknown), 126 | 127) => format!(
            "either the command could not be executed in the image, or the container runtime refused to start it (its message above says which); {}",
            Cause::Unknown.hint()
        ),
        _ => "an engine flag (--engine-arg, recorded with the run) or the container runtime failed: check them, and that the engine works (`repro doctor`)".into(),
    }
}

/// The cause a probe container with `plan`'s flags fails with; `None` when it cannot tell.
fn probe_cause(plan: &EnginePlan, debug: &dyn Fn(&str)) -> Option<Cause> {
    let id = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let name = format!("repro-probe-{id}");
    let src = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&src).ok()?;
    let args = probe_args(plan, &name, Some(MISSING_ENTRYPOINT), &src);
    let engine = plan.engine.as_str();
    let res = run_probe(engine, &args, &name, Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&src);
    match res {
        Ok(c) if !c.success() => {
            debug(&format!(
                "probe container ({engine} exited {:?}): {}",
                c.code,
                c.message()
            ));
            Some(Cause::of(&c.stderr))
        }
        Ok(_) => None,
        Err(e) => {
            debug(&format!("probe container: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages as podman 4.3 / runc 1.1, crun, docker and the registries print them.
    #[test]
    fn real_engine_messages_map_to_their_cause() {
        let cases = [
            ("Error: runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied", Cause::Rlimits),
            ("Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied", Cause::Rlimits),
            ("Error: OCI runtime error: runc: runc create failed: systemd not running on this host, cannot use systemd cgroups manager", Cause::Cgroups),
            ("Error: OCI runtime error: runc: runc create failed: unable to start container process: error during container init: error setting cgroup config for procHooks process: unable to set memory limit to 1048576 (current usage: 2535424, peak usage: 2772992)", Cause::Cgroups),
            ("Error: OCI runtime error: crun: cannot set memory limit: container could not join or create cgroup", Cause::Cgroups),
            ("Error: writing blob: adding layer with blob \"sha256:ab\": Error processing tar file(exit status 1): potentially insufficient UIDs or GIDs available in user namespace (requested 0:42 for /etc/shadow): Check /etc/subuid and /etc/subgid if configured locally and run \"podman system migrate\": lchown /etc/shadow: invalid argument", Cause::RootlessStorage),
            ("Error: kernel does not support overlay fs: 'overlay' is not supported over overlayfs, a mount_program is required: backing file system is unsupported for this graph driver", Cause::RootlessStorage),
            ("Error: fuse-overlayfs: cannot mount: No such file or directory", Cause::RootlessStorage),
            ("Error: initializing source docker://127.0.0.1:5000/team/app@sha256:ab: pinging container registry 127.0.0.1:5000: Get \"https://127.0.0.1:5000/v2/\": http: server gave HTTP response to HTTPS client", Cause::PlainHttp),
            ("Error: initializing source docker://127.0.0.1:5000/app:1: pinging container registry 127.0.0.1:5000: Get \"https://127.0.0.1:5000/v2/\": tls: failed to verify certificate: x509: certificate signed by unknown authority", Cause::Certificate),
            ("Error: initializing source docker://127.0.0.1:5000/app:1: reading manifest 1 in 127.0.0.1:5000/app: unauthorized: authentication required", Cause::Credentials),
            ("Error response from daemon: pull access denied for team/app, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", Cause::Credentials),
            ("Error: runc: runc create failed: unable to start container process: exec: \"/nonexistent\": stat /nonexistent: no such file or directory: OCI runtime attempted to invoke a command that was not found", Cause::NotExecutable),
            ("docker: Error response from daemon: failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"trainx\": executable file not found in $PATH: unknown.", Cause::NotExecutable),
            ("Error: runc: runc create failed: unable to start container process: exec: \"/data/x\": permission denied: OCI permission denied", Cause::NotExecutable),
            ("docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/no/such/program\": stat /no/such/program: no such file or directory: unknown", Cause::NotExecutable),
            ("the registry no longer has sha256:ab (r/app@sha256:ab) and no archive of it is recorded: manifest unknown", Cause::ImageGone),
            ("Error: short-name resolution enforced but cannot prompt without a TTY", Cause::Unknown),
        ];
        for (msg, want) in cases {
            assert_eq!(Cause::of(msg), want, "{msg}");
        }
    }

    #[test]
    fn hints_name_the_fix() {
        let h = engine_hint(
            "error setting rlimit type 7: operation not permitted: OCI permission denied",
        );
        assert!(
            h.contains("--ulimit=nofile=") && h.contains("engine_args"),
            "{h}"
        );
        assert!(!h.contains("could not be executed"), "{h}");
        assert!(engine_hint("server gave HTTP response to HTTPS client")
            .contains("--insecure-registry"));
        assert!(engine_hint("server gave HTTP response to HTTPS client")
            .contains("insecure_registries"));
        assert!(engine_hint("x509: certificate signed by unknown authority").contains("--ca-cert"));
        assert!(
            engine_hint("potentially insufficient UIDs or GIDs available")
                .contains("podman system migrate")
        );
        assert!(engine_hint(
            "systemd not running on this host, cannot use systemd cgroups manager"
        )
        .contains("cgroupfs"));
        assert!(
            engine_hint("executable file not found in $PATH").contains("first word of the command")
        );
    }

    #[test]
    fn probe_keeps_the_plan_flags_and_swaps_name_tty_and_command() {
        let mut run = crate::script::sample_run();
        run.exec.engine_args = vec!["--ulimit=nofile=1024:1024".into(), "--network=none".into()];
        let plan = EnginePlan::of(
            &run,
            crate::exec::Engine::Podman,
            &crate::script::plan::PlanOptions {
                name: Some("repro-x".into()),
                tty: true,
                registry: Default::default(),
            },
        )
        .expect("container plan");
        let real: Vec<String> = plan
            .run_args(&Bindings::default())
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let probe: Vec<String> = probe_args(&plan, "p1", Some(MISSING_ENTRYPOINT), Path::new("/e"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(real.contains(&"-t".to_string()) && !probe.contains(&"-t".to_string()));
        assert!(probe.contains(&"--name=p1".to_string()), "{probe:?}");
        assert!(!probe.contains(&"--name=repro-x".to_string()));
        for flag in ["--ulimit=nofile=1024:1024", "--network=none", "--rm"] {
            assert!(
                probe.contains(&flag.to_string()),
                "{flag} missing: {probe:?}"
            );
        }
        let image_at = probe.iter().position(|a| *a == plan.image).expect("image");
        assert_eq!(
            probe[image_at - 1],
            format!("--entrypoint={MISSING_ENTRYPOINT}")
        );
        assert_eq!(
            image_at,
            probe.len() - 1,
            "no argv after the image: {probe:?}"
        );
        let with_cmd = probe_args(&plan, "p2", None, Path::new("/e"));
        assert_eq!(with_cmd.len(), real.len() - 1, "only -t dropped");
    }
}
