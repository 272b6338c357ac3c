//! The engine plan: the exact engine argv — pull and run, with flags, mounts, env names, workdir
//! and registry options — computed once from a record. `repro run`, `repro rerun`, the bash
//! script and the Slurm script (podman runtime) all render this one plan, so they cannot disagree.
//!
//! A few words are only known where the plan is executed (the host directory of the checkout,
//! dataset mounts found at run time, a temporary certificate directory); they are [`Word`]
//! placeholders that the native runner fills with paths and the scripts with shell variables.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::capture::image::registry::{HostSettings, RegistryOptions};
use crate::exec::Engine;
use crate::record::{ExecMode, Image, Run};

/// The container working directory used when the record does not name one.
pub const DEFAULT_WORKDIR: &str = crate::config::DEFAULT_WORKDIR;

/// One engine argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    /// A literal argument.
    Lit(String),
    /// `PREFIX<host dir mounted at the workdir>SUFFIX`.
    Src { prefix: String, suffix: String },
    /// Zero or more `--volume=HOST:DST:ro` flags for datasets found outside the checkout.
    ExtraMounts,
    /// `--cert-dir=<a directory holding the CA certificate>` (podman, `--ca-cert`).
    CertDir,
    /// `--env=REPRO_RUN_ID --env=REPRO_METRICS --volume=FILE:FILE`: the run's metrics file at the
    /// same path inside (docs/metrics.md); nothing when there is no file.
    Metrics,
    /// The image to pull or run: [`EnginePlan::image`], which a pull from an archive registry
    /// replaces by the archive's `REGISTRY/REPO@DIGEST` (the script's `$image`).
    Image,
}

/// Where a re-run can get a run's image when the registry no longer has the digest: the
/// recorded archives, registries first (any engine can pull them), then OCI layouts (podman
/// pulls `oci:DIR:DIGEST`; the layout names every manifest by its digest). Built from the
/// store's archive records by `ops::archive::pull_fallback`; part of the plan so that
/// `repro run`/`repro rerun`, the bash script and the Slurm script fall back alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFallback {
    /// The digest that must run (the platform manifest for a multi-arch image).
    pub digest: String,
    /// `REGISTRY/REPO@DIGEST` of each archive registry that holds it.
    pub registries: Vec<String>,
    /// Absolute OCI layout directories recorded for the image.
    pub layouts: Vec<String>,
    /// The normalized repository name (`docker.io/library/ubuntu`): an image pulled from a
    /// layout is tagged `NAME:repro-archive-HEX12` so that `NAME@DIGEST` names it locally.
    pub name: String,
}

impl PullFallback {
    /// The local tag given to an image pulled from a layout.
    pub fn local_tag(&self) -> String {
        let hex = self.digest.split_once(':').map(|(_, h)| h).unwrap_or("");
        format!("{}:repro-archive-{}", self.name, &hex[..hex.len().min(12)])
    }

    /// The reference to run after a fallback pull from a layout.
    pub fn local_reference(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }
}

/// How the engine reaches the registry for the pull: podman `--tls-verify=false` for an insecure
/// registry, `--cert-dir` holding every CA file that applies to the host (`--ca-cert`, then the
/// `certs.d/HOST[:PORT]/*.crt` repro's own client reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryFlags {
    /// Plain HTTP / no TLS verification for this image's registry (`--insecure-registry`).
    pub insecure: bool,
    /// CA files to trust for this pull (`--ca-cert`, then certs.d `*.crt`).
    pub ca_files: Vec<PathBuf>,
    /// The certs.d `HOST[:PORT]` directories (their client `*.cert`/`*.key` pairs are copied to
    /// the native run's `--cert-dir`; never embedded in a script).
    pub cert_dirs: Vec<PathBuf>,
}

impl RegistryFlags {
    /// The engine's pull options for one registry host from repro's settings for it.
    pub fn of(s: &HostSettings) -> RegistryFlags {
        RegistryFlags {
            insecure: s.insecure,
            ca_files: s.ca_files.clone(),
            cert_dirs: s.cert_dirs.clone(),
        }
    }

    /// Whether the pull needs a `--cert-dir` (podman).
    pub fn needs_cert_dir(&self) -> bool {
        !self.ca_files.is_empty()
    }

    /// The pull options for `img` from repro's registry options (its host's settings:
    /// insecure declaration, `--ca-cert`, certs.d).
    pub fn for_image(img: &Image, opts: &RegistryOptions) -> RegistryFlags {
        RegistryFlags::of(&opts.host_settings(&registry_of(img)))
    }

    /// The pull options of a recorded run's engine plan: what the run recorded it needed
    /// ([`Exec::registry`](crate::record::Exec)), plus what applies now (flags, configuration,
    /// certs.d). Every re-run path (`repro rerun`, each `repro script` target, Slurm re-runs,
    /// the MLflow `rerun.sh`) takes its registry options from here.
    pub fn for_run(run: &Run, now: &RegistryOptions) -> RegistryFlags {
        let Some(img) = &run.image else {
            return RegistryFlags::default();
        };
        let current = RegistryFlags::for_image(img, now);
        let Some(rec) = &run.exec.registry else {
            return current;
        };
        let mut f = RegistryFlags {
            insecure: rec.insecure || current.insecure,
            ca_files: rec
                .ca_certs
                .iter()
                .map(|c| PathBuf::from(&c.path))
                .collect(),
            cert_dirs: current.cert_dirs,
        };
        for ca in current.ca_files {
            if !f.ca_files.contains(&ca) {
                f.ca_files.push(ca);
            }
        }
        f
    }
}

/// Why the CA certificates of a pull cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// A CA file cannot be read.
    #[error("cannot read the CA certificate {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// A recorded CA file now holds another certificate.
    #[error("the CA certificate {} has changed since the run was recorded: {now}, the run trusted {recorded}", path.display())]
    Changed {
        path: PathBuf,
        recorded: String,
        now: String,
    },
}

impl crate::error::Hinted for CaError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            CaError::Read { .. } => "put the registry's CA certificate back where the run found it, or give a readable PEM file with --ca-cert".into(),
            CaError::Changed { .. } => "restore the certificate the run trusted, or record a new run that trusts the new one".into(),
        })
    }
}

/// The PEM text of every CA file of `flags` (the pull's `--cert-dir`), each recorded one
/// checked against the SHA-256 the run recorded; `None` when the pull needs no CA.
pub fn ca_pem(run: &Run, flags: &RegistryFlags) -> Result<Option<String>, CaError> {
    use sha2::Digest as _;
    let recorded = run.exec.registry.as_ref().map(|r| &r.ca_certs[..]);
    let mut pem = String::new();
    for f in &flags.ca_files {
        let bytes = std::fs::read(f).map_err(|e| CaError::Read {
            path: f.clone(),
            reason: e.to_string(),
        })?;
        let rec = recorded
            .unwrap_or_default()
            .iter()
            .find(|c| Path::new(&c.path) == f);
        if let Some(c) = rec {
            let now = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
            if now != c.sha256 {
                return Err(CaError::Changed {
                    path: f.clone(),
                    recorded: c.sha256.clone(),
                    now,
                });
            }
        }
        pem.push_str(String::from_utf8_lossy(&bytes).trim_end());
        pem.push('\n');
    }
    Ok((!pem.is_empty()).then_some(pem))
}

/// Inputs that are not in the record.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Container name (`--name=`); `None` lets the engine choose.
    pub name: Option<String>,
    /// Allocate a TTY (`-t`): only when stdin and stdout are both terminals.
    pub tty: bool,
    /// Registry options for the pull.
    pub registry: RegistryFlags,
}

/// The engine invocations of one container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnginePlan {
    /// The engine program.
    pub engine: Engine,
    /// `name@digest` (or the reference as written when unpinned).
    pub image: String,
    /// Arguments of `<engine>` for the pull (`pull [registry flags] IMAGE`): always `pull`
    /// first and [`Word::Image`] last, the registry flags between ([`EnginePlan::pull_flags`]).
    pub pull: Vec<Word>,
    /// Arguments of `<engine>` for the run (`run --rm -i … IMAGE ARGV…`), argv as raw bytes.
    pub run: Vec<Word>,
    /// The recorded argv, appended after `run`.
    pub argv: Vec<Vec<u8>>,
    /// The recorded archives to pull from when the registry pull fails ([`EnginePlan::with_fallback`]).
    pub fallback: Option<PullFallback>,
}

/// Values for the placeholders when the plan is executed natively.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    /// Host directory mounted at the workdir.
    pub src: PathBuf,
    /// (host path, container path) mounted read-only.
    pub extra_mounts: Vec<(PathBuf, String)>,
    /// Directory holding the CA certificates, when `RegistryFlags::needs_cert_dir`.
    pub cert_dir: Option<PathBuf>,
    /// The run's metrics file (`REPRO_METRICS`), mounted read-write at the same path.
    pub metrics: Option<PathBuf>,
    /// The run's channel directory (`REPRO_PARAMS`, `REPRO_OUTPUTS`), mounted read-write at the
    /// same path, with `REPRO_WORKDIR`.
    pub channels: Option<PathBuf>,
}

/// The working directory inside the container: the recorded workdir plus the relative cwd.
pub fn container_dirs(run: &Run) -> (String, String) {
    let workdir = run
        .exec
        .workdir
        .clone()
        .unwrap_or_else(|| DEFAULT_WORKDIR.to_string());
    let inner = if run.code.is_none() || run.cwd.is_empty() || run.cwd == "." {
        workdir.clone()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), run.cwd)
    };
    (workdir, inner)
}

/// `name@digest` with the name normalised (`ubuntu` → `docker.io/library/ubuntu`), so that no
/// engine applies its own short-name resolution; the reference as written when unpinned.
pub fn engine_image_name(img: &Image) -> String {
    let name = crate::capture::image::reference::parse_normalized(&img.reference)
        .map(|r| r.name())
        .unwrap_or_else(|_| img.repository());
    match &img.digest {
        Some(d) => format!("{name}@{d}"),
        None => img.reference.clone(),
    }
}

/// The registry `HOST[:PORT]` of an image reference (`docker.io` for short names).
pub fn registry_of(img: &Image) -> String {
    crate::capture::image::reference::parse_normalized(&img.reference)
        .map(|r| r.domain.clone())
        .unwrap_or_else(|_| "docker.io".into())
}

impl EnginePlan {
    /// The plan of a container run; `None` for a host run or a run without an image.
    pub fn of(run: &Run, engine: Engine, opts: &PlanOptions) -> Option<EnginePlan> {
        let img = match (run.exec.mode, &run.image) {
            (ExecMode::Container, Some(img)) => img,
            _ => return None,
        };
        let image = engine_image_name(img);
        let lit = |s: &str| Word::Lit(s.to_string());
        let mut pull = vec![lit("pull")];
        // docker has no per-pull TLS flags: the daemon decides (docs/faq.md).
        if engine == Engine::Podman {
            if opts.registry.insecure {
                pull.push(lit("--tls-verify=false"));
            }
            if opts.registry.needs_cert_dir() {
                pull.push(Word::CertDir);
            }
        }
        pull.push(Word::Image);

        let (workdir, inner) = container_dirs(run);
        let mut r = vec![lit("run"), lit("--rm"), lit("-i")];
        if opts.tty {
            r.push(lit("-t"));
        }
        if let Some(n) = &opts.name {
            r.push(Word::Lit(format!("--name={n}")));
        }
        r.push(Word::Src {
            prefix: "--volume=".into(),
            suffix: format!(":{workdir}"),
        });
        r.push(Word::Lit(format!("--workdir={inner}")));
        for k in run.env.keys() {
            r.push(lit("--env"));
            r.push(lit(k));
        }
        r.push(Word::ExtraMounts);
        r.push(Word::Metrics);
        if let Some(g) = &run.exec.gpus {
            let given = run
                .exec
                .engine_args
                .iter()
                .any(|a| a.starts_with("--gpus") || a.starts_with("--device=nvidia.com/gpu"));
            if !given {
                r.extend(
                    crate::exec::gpu_flags(engine.as_str(), g)
                        .into_iter()
                        .map(Word::Lit),
                );
            }
        }
        r.extend(run.exec.engine_args.iter().map(|a| lit(a)));
        r.push(Word::Image);
        Some(EnginePlan {
            engine,
            image,
            pull,
            run: r,
            argv: run.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
            fallback: None,
        })
    }

    /// The plan that falls back to these archives when the registry pull fails (`None`: no
    /// archive recorded). The fallback must be for the plan's digest.
    pub fn with_fallback(mut self, fallback: Option<PullFallback>) -> EnginePlan {
        self.fallback = fallback.filter(|f| self.image.ends_with(&format!("@{}", f.digest)));
        self
    }

    /// The plan running `image` instead (a reference pulled from an archive, with the same
    /// digest): the pull and run words name it.
    pub fn running(mut self, image: String) -> EnginePlan {
        self.image = image;
        self
    }

    /// The registry flags of the pull (between `pull` and the image).
    pub fn pull_flags(&self) -> &[Word] {
        let n = self.pull.len();
        if n < 2 {
            return &[];
        }
        &self.pull[1..n - 1]
    }

    fn bind(&self, words: &[Word], b: &Bindings) -> Vec<OsString> {
        let mut out = Vec::new();
        for w in words {
            match w {
                Word::Lit(s) => out.push(OsString::from(s)),
                Word::Image => out.push(OsString::from(&self.image)),
                Word::Src { prefix, suffix } => {
                    let mut o = OsString::from(prefix);
                    o.push(b.src.as_os_str());
                    o.push(suffix);
                    out.push(o);
                }
                Word::ExtraMounts => {
                    for (src, dst) in &b.extra_mounts {
                        let mut m = OsString::from("--volume=");
                        m.push(src.as_os_str());
                        m.push(format!(":{dst}:ro"));
                        out.push(m);
                    }
                }
                Word::Metrics => {
                    if let Some(f) = &b.metrics {
                        out.push("--env=REPRO_RUN_ID".into());
                        out.push("--env=REPRO_METRICS".into());
                        let mut m = OsString::from("--volume=");
                        m.push(f.as_os_str());
                        m.push(":");
                        m.push(f.as_os_str());
                        out.push(m);
                    }
                    if let Some(d) = &b.channels {
                        for var in ["REPRO_PARAMS", "REPRO_OUTPUTS", "REPRO_WORKDIR"] {
                            out.push(format!("--env={var}").into());
                        }
                        let mut m = OsString::from("--volume=");
                        m.push(d.as_os_str());
                        m.push(":");
                        m.push(d.as_os_str());
                        out.push(m);
                    }
                }
                Word::CertDir => {
                    if let Some(d) = &b.cert_dir {
                        let mut o = OsString::from("--cert-dir=");
                        o.push(d.as_os_str());
                        out.push(o);
                    }
                }
            }
        }
        out
    }

    /// The pull arguments (after the engine program) with the placeholders filled.
    pub fn pull_args(&self, b: &Bindings) -> Vec<OsString> {
        self.bind(&self.pull, b)
    }

    /// The run arguments (after the engine program), argv included, placeholders filled.
    pub fn run_args(&self, b: &Bindings) -> Vec<OsString> {
        use std::os::unix::ffi::OsStringExt;
        let mut a = self.bind(&self.run, b);
        a.extend(self.argv.iter().map(|v| OsString::from_vec(v.clone())));
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::sample_run;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn plan_of_a_container_run() {
        let mut run = sample_run();
        run.exec.engine_args = os(&["--cap-add", "A", "--cap-add", "B"])
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let plan = EnginePlan::of(
            &run,
            Engine::Podman,
            &PlanOptions {
                name: Some("repro-x".into()),
                tty: false,
                registry: RegistryFlags {
                    insecure: true,
                    ca_files: vec!["/ca.crt".into()],
                    cert_dirs: vec![],
                },
            },
        )
        .unwrap();
        let b = Bindings {
            src: "/src".into(),
            extra_mounts: vec![("/data/val".into(), "/workspace/data/val".into())],
            cert_dir: Some("/tmp/certs".into()),
            metrics: None,
            channels: None,
        };
        let image = format!(
            "registry.example.com/team/trainer@sha256:{}",
            "ab".repeat(32)
        );
        assert_eq!(
            plan.pull_args(&b),
            os(&[
                "pull",
                "--tls-verify=false",
                "--cert-dir=/tmp/certs",
                &image
            ])
        );
        let args = plan.run_args(&b);
        let head = os(&[
            "run",
            "--rm",
            "-i",
            "--name=repro-x",
            "--volume=/src:/workspace",
            "--workdir=/workspace/experiments/resnet",
            "--env",
            "SEED",
            "--volume=/data/val:/workspace/data/val:ro",
            "--device=nvidia.com/gpu=all",
            "--cap-add",
            "A",
            "--cap-add",
            "B",
            &image,
            "python",
        ]);
        assert_eq!(args[..head.len()], head[..]);
        assert_eq!(args.len(), head.len() + run.command.len() - 1);
    }

    #[test]
    fn metrics_file_is_mounted_at_the_same_path_with_both_variables() {
        let run = sample_run();
        let plan = EnginePlan::of(&run, Engine::Podman, &PlanOptions::default()).unwrap();
        let without = plan.run_args(&Bindings::default());
        assert!(!without
            .iter()
            .any(|a| a.to_string_lossy().contains("REPRO_")));
        let b = Bindings {
            metrics: Some("/d/metrics/x.jsonl".into()),
            ..Bindings::default()
        };
        let args = plan.run_args(&b);
        let want = os(&[
            "--env=REPRO_RUN_ID",
            "--env=REPRO_METRICS",
            "--volume=/d/metrics/x.jsonl:/d/metrics/x.jsonl",
        ]);
        let at = args.iter().position(|a| a == "--env=REPRO_RUN_ID").unwrap();
        assert_eq!(args[at..at + 3], want[..]);
        assert_eq!(args.len(), without.len() + 3);
    }

    #[test]
    fn docker_gets_no_tls_flags_and_tty_only_when_asked() {
        let run = sample_run();
        let opts = PlanOptions {
            tty: true,
            registry: RegistryFlags {
                insecure: true,
                ca_files: vec!["/ca.crt".into()],
                cert_dirs: vec![],
            },
            ..PlanOptions::default()
        };
        let plan = EnginePlan::of(&run, Engine::Docker, &opts).unwrap();
        let b = Bindings::default();
        assert_eq!(plan.pull_args(&b).len(), 2, "docker pull IMAGE only");
        let args = plan.run_args(&b);
        assert_eq!(args[..4], os(&["run", "--rm", "-i", "-t"])[..]);
        assert!(args.contains(&OsString::from("--gpus=all")));
        let plan = EnginePlan::of(&run, Engine::Docker, &PlanOptions::default()).unwrap();
        assert!(!plan.run_args(&b).contains(&OsString::from("-t")));
    }

    #[test]
    fn the_recorded_access_is_part_of_every_plan_and_flags_add_to_it() {
        use crate::record::{CaCert, RegistryAccess};
        let tmp = tempfile::tempdir().unwrap();
        let (recorded, given) = (tmp.path().join("rec.pem"), tmp.path().join("now.pem"));
        std::fs::write(&recorded, "recorded pem\n").unwrap();
        std::fs::write(&given, "given pem\n").unwrap();
        let sha = |b: &[u8]| {
            use sha2::Digest as _;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
        };
        let mut run = sample_run();
        run.exec.registry = Some(RegistryAccess {
            registry: "registry.example.com".into(),
            insecure: true,
            ca_certs: vec![CaCert {
                path: recorded.to_string_lossy().into_owned(),
                sha256: sha(b"recorded pem\n"),
            }],
        });
        let none = RegistryOptions {
            certs_d: vec![],
            ..RegistryOptions::default()
        };
        let f = RegistryFlags::for_run(&run, &none);
        assert!(f.insecure);
        assert_eq!(f.ca_files, vec![recorded.clone()]);
        let now = RegistryOptions {
            ca_cert: Some(given.clone()),
            ..none.clone()
        };
        let f = RegistryFlags::for_run(&run, &now);
        assert_eq!(f.ca_files, vec![recorded.clone(), given.clone()]);
        assert_eq!(
            ca_pem(&run, &f).unwrap().unwrap(),
            "recorded pem\ngiven pem\n"
        );
        // Another certificate under the recorded name is refused, a missing one too.
        std::fs::write(&recorded, "another pem\n").unwrap();
        assert!(matches!(ca_pem(&run, &f), Err(CaError::Changed { .. })));
        std::fs::remove_file(&recorded).unwrap();
        assert!(matches!(ca_pem(&run, &f), Err(CaError::Read { .. })));
        // Without a record, only what applies now.
        run.exec.registry = None;
        assert_eq!(
            RegistryFlags::for_run(&run, &none),
            RegistryFlags::default()
        );
    }

    #[test]
    fn host_runs_have_no_plan() {
        let mut run = sample_run();
        run.exec.mode = ExecMode::Host;
        assert!(EnginePlan::of(&run, Engine::Podman, &PlanOptions::default()).is_none());
    }

    #[test]
    fn a_certs_d_directory_alone_gives_podman_a_cert_dir() {
        use crate::capture::image::registry::RegistryOptions;
        let tmp = tempfile::tempdir().unwrap();
        let host = "127.0.0.1:5443";
        std::fs::create_dir_all(tmp.path().join(host)).unwrap();
        std::fs::write(tmp.path().join(host).join("ca.crt"), "pem").unwrap();
        let opts = RegistryOptions {
            certs_d: vec![tmp.path().to_path_buf()],
            ..RegistryOptions::default()
        };
        let mut run = sample_run();
        run.image.as_mut().unwrap().reference = format!("{host}/team/app:1");
        let flags =
            RegistryFlags::of(&opts.host_settings(&registry_of(run.image.as_ref().unwrap())));
        assert_eq!(flags.ca_files, vec![tmp.path().join(host).join("ca.crt")]);
        let po = PlanOptions {
            registry: flags,
            ..PlanOptions::default()
        };
        let b = Bindings {
            cert_dir: Some("/tmp/c".into()),
            ..Bindings::default()
        };
        let plan = EnginePlan::of(&run, Engine::Podman, &po).unwrap();
        assert!(plan
            .pull_args(&b)
            .contains(&OsString::from("--cert-dir=/tmp/c")));
        let plan = EnginePlan::of(&run, Engine::Docker, &po).unwrap();
        assert!(!plan
            .pull_args(&b)
            .iter()
            .any(|a| a.to_string_lossy().starts_with("--cert-dir")));
    }
}
