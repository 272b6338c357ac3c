//! The Kubernetes target: a `batch/v1` Job with the image pinned by digest, the argv as
//! `command` (argv[0]) and `args` lists, named env vars, GPU limits, the run id as a label, and an
//! init container that checks out the exact commit (and applies the recorded patch) into an
//! `emptyDir` volume mounted at the working directory.
//!
//! Every string is written with [`quote::yaml`]; the init container's shell script is a constant
//! that reads the recorded values from its environment, so no recorded value is ever parsed as
//! shell code.

use std::fmt::Write as _;

use base64::Engine as _;

use super::plan::RegistryFlags;
use super::{
    check_env_name, container_dirs, header_comments, image_ref, job_name, quote, RenderError,
};
use crate::record::{Code, Image, Run};

/// A well-known image with what the checkout init container needs (`sh`, `git`, `base64`,
/// `sha256sum`), named in the hint when no image is given. Never emitted by itself: a tag moves,
/// and the product that refuses to record `latest` must not render one (the manifest is rendered
/// offline, so repro cannot resolve a digest for it here).
pub const SUGGESTED_GIT_IMAGE: &str = "docker.io/alpine/git";

/// Options of the Kubernetes target.
#[derive(Debug, Clone, Default)]
pub struct K8sOptions {
    /// Image of the checkout init container, `name@sha256:<64 hex>`; required when the Job checks
    /// out a commit, refused when not pinned by digest.
    pub git_image: Option<String>,
    /// The engine plan's registry options: a Job cannot pass pull flags, so the manifest says
    /// what the nodes' runtime must allow.
    pub registry: RegistryFlags,
}

/// The checkout image of `opts`, which must carry a well-formed `@sha256:` digest.
fn pinned_git_image(opts: &K8sOptions) -> Result<&str, RenderError> {
    let reference = opts.git_image.as_deref().unwrap_or("");
    let pinned = reference
        .rsplit_once("@sha256:")
        .is_some_and(|(name, hex)| {
            !name.is_empty()
                && hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if pinned
        && !reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        Ok(reference)
    } else {
        Err(RenderError::UnpinnedGitImage {
            reference: if reference.is_empty() {
                "(none given)".into()
            } else {
                format!("{reference:?}")
            },
        })
    }
}

/// The init container's script: constant text, every recorded value comes from its env.
const CHECKOUT_SCRIPT: &str = r#"set -eu
git clone --no-checkout -- "$REPRO_REMOTE" "$REPRO_SRC"
git -C "$REPRO_SRC" -c advice.detachedHead=false checkout --detach "$REPRO_COMMIT"
if [ -n "${REPRO_PATCH_BASE64:-}" ]; then
  printf '%s' "$REPRO_PATCH_BASE64" | base64 -d > /tmp/repro.patch
  echo "$REPRO_PATCH_SHA256  /tmp/repro.patch" | sha256sum -c -
  git -C "$REPRO_SRC" apply --binary /tmp/repro.patch
fi
"#;

/// Renders the Job manifest of `run`.
pub fn render(run: &Run, opts: &K8sOptions) -> Result<String, RenderError> {
    let img = run
        .image
        .as_ref()
        .ok_or_else(|| unsupported(run, "the run recorded no image; a Job needs one"))?;
    let (reference, _) = image_ref(run, img)?;
    let argv = text_argv(run)?;
    let checkout = checkout_of(run)?;
    let mut s = comments(run, &opts.registry);
    s.push_str(&metadata(run, img));
    if let Some((code, commit, remote)) = checkout {
        s.push_str(&init_container(run, opts, code, commit, remote)?);
    }
    s.push_str(&run_container(run, &reference, &argv, checkout.is_some())?);
    Ok(s)
}

fn unsupported(run: &Run, reason: &str) -> RenderError {
    RenderError::Unsupported {
        id: run.id.clone(),
        target: "Kubernetes",
        reason: reason.to_string(),
    }
}

/// The argv as text: a manifest cannot carry a NUL or bytes that are not UTF-8.
fn text_argv(run: &Run) -> Result<Vec<&str>, RenderError> {
    let mut argv = Vec::with_capacity(run.command.len());
    for (i, a) in run.command.iter().enumerate() {
        let what = format!("argument {i} of the command");
        if a.as_bytes().contains(&0) {
            return Err(RenderError::Nul {
                id: run.id.clone(),
                what,
                source: quote::QuoteError::Nul {
                    offset: a.as_bytes().iter().position(|&b| b == 0).unwrap_or(0),
                },
            });
        }
        let text = std::str::from_utf8(a.as_bytes()).map_err(|_| RenderError::NotUtf8 {
            id: run.id.clone(),
            what,
            lossy: quote::display(a.as_bytes()),
        })?;
        argv.push(text);
    }
    Ok(argv)
}

/// The code the Job checks out: (code, commit, remote); a commit without a remote cannot be
/// cloned by a pod.
fn checkout_of(run: &Run) -> Result<Option<(&Code, &String, &String)>, RenderError> {
    let Some(code) = &run.code else {
        return Ok(None);
    };
    match (&code.commit, &code.remote) {
        (Some(commit), Some(remote)) => Ok(Some((code, commit, remote))),
        (Some(_), None) => Err(unsupported(
            run,
            &format!(
                "its repository has no remote, and a pod cannot clone the local path {}",
                quote::display(code.repo_root.as_bytes())
            ),
        )),
        (None, _) => Ok(None),
    }
}

/// The header comments (display form: no recorded newline can leave a comment), with what the
/// engine plan needs from the registry: a Job cannot pass pull flags, the nodes' runtime must
/// allow it.
fn comments(run: &Run, registry: &RegistryFlags) -> String {
    let mut s = String::new();
    for line in header_comments(
        run,
        "Kubernetes Job generated by `repro script --target k8s`.",
    )
    .lines()
    {
        if !line.starts_with("# shellcheck") {
            s.push_str(line);
            s.push('\n');
        }
    }
    let host = run
        .image
        .as_ref()
        .map(super::plan::registry_of)
        .unwrap_or_default();
    let host = quote::display(host.as_bytes());
    if registry.insecure {
        let _ = writeln!(
            s,
            "# Registry:   {host} is insecure (plain HTTP): the nodes' container runtime must allow it\n#             (containerd: hosts.toml; CRI-O: registries.conf)."
        );
    }
    if registry.needs_cert_dir() {
        let _ = writeln!(
            s,
            "# Registry:   the run trusted a private CA for {host}: the nodes' container runtime needs it\n#             (containerd: certs.d/{host}/ca.crt)."
        );
    }
    s
}

/// `apiVersion` … the pod template's `restartPolicy`: name, labels and the recorded pins.
fn metadata(run: &Run, img: &Image) -> String {
    let y = |s: &str| quote::yaml(s);
    let mut s = String::new();
    let _ = writeln!(s, "apiVersion: batch/v1\nkind: Job\nmetadata:");
    let _ = writeln!(s, "  name: {}", y(&job_name(run)));
    let _ = writeln!(
        s,
        "  labels:\n    repro.dev/run-id: {}",
        y(&label_value(&run.id))
    );
    let _ = writeln!(s, "  annotations:\n    repro.dev/run-id: {}", y(&run.id));
    let _ = writeln!(s, "    repro.dev/image-reference: {}", y(&img.reference));
    if let Some(c) = run.code.as_ref().and_then(|c| c.commit.as_deref()) {
        let _ = writeln!(s, "    repro.dev/commit: {}", y(c));
    }
    for (i, ds) in run.datasets.iter().enumerate() {
        let v = format!(
            "{} {} {} {}",
            ds.name,
            ds.kind.as_str(),
            ds.uri.as_deref().unwrap_or("-"),
            ds.digest
                .as_deref()
                .or(ds.version.as_deref())
                .unwrap_or("-")
        );
        let _ = writeln!(s, "    repro.dev/dataset-{}: {}", i + 1, y(&v));
    }
    let _ = writeln!(s, "spec:\n  backoffLimit: 0\n  template:\n    metadata:");
    let _ = writeln!(
        s,
        "      labels:\n        repro.dev/run-id: {}",
        y(&label_value(&run.id))
    );
    let _ = writeln!(s, "    spec:\n      restartPolicy: Never");
    s
}

/// The `src` volume and the init container that checks out the commit (and the patch) into it.
fn init_container(
    run: &Run,
    opts: &K8sOptions,
    code: &Code,
    commit: &str,
    remote: &str,
) -> Result<String, RenderError> {
    let y = |s: &str| quote::yaml(s);
    let (workdir, _) = container_dirs(run);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "      volumes:\n        - name: src\n          emptyDir: {{}}"
    );
    let _ = writeln!(s, "      initContainers:\n        - name: checkout");
    let git_image = pinned_git_image(opts)?;
    let _ = writeln!(s, "          image: {}", y(git_image));
    let _ = writeln!(
        s,
        "          command:\n            - \"sh\"\n            - \"-c\"\n            - {}",
        y(CHECKOUT_SCRIPT)
    );
    let _ = writeln!(s, "          env:");
    let mut env = vec![
        ("REPRO_SRC", workdir.clone()),
        ("REPRO_REMOTE", remote.to_string()),
        ("REPRO_COMMIT", commit.to_string()),
    ];
    if let (Some(patch), Some(sum)) = (&code.patch, &code.patch_sha256) {
        env.push((
            "REPRO_PATCH_BASE64",
            base64::engine::general_purpose::STANDARD.encode(patch.as_bytes()),
        ));
        env.push(("REPRO_PATCH_SHA256", sum.clone()));
    }
    for (k, v) in env {
        let _ = writeln!(s, "            - name: {k}\n              value: {}", y(&v));
    }
    let _ = writeln!(
        s,
        "          volumeMounts:\n            - name: src\n              mountPath: {}",
        y(&workdir)
    );
    Ok(s)
}

/// The container that runs the recorded argv in the pinned image.
fn run_container(
    run: &Run,
    reference: &str,
    argv: &[&str],
    with_src: bool,
) -> Result<String, RenderError> {
    let y = |s: &str| quote::yaml(s);
    let (workdir, inner) = container_dirs(run);
    let mut s = String::new();
    let _ = writeln!(s, "      containers:\n        - name: run");
    let _ = writeln!(s, "          image: {}", y(reference));
    if let Some((first, rest)) = argv.split_first() {
        let _ = writeln!(s, "          command:\n            - {}", y(first));
        if rest.is_empty() {
            let _ = writeln!(s, "          args: []");
        } else {
            let _ = writeln!(s, "          args:");
            for a in rest {
                let _ = writeln!(s, "            - {}", y(a));
            }
        }
    }
    let _ = writeln!(s, "          workingDir: {}", y(&inner));
    if !run.env.is_empty() {
        let _ = writeln!(s, "          env:");
        for (k, v) in &run.env {
            check_env_name(&run.id, k)?;
            let _ = writeln!(
                s,
                "            - name: {}\n              value: {}",
                y(k),
                y(v)
            );
        }
    }
    if let Some(g) = &run.exec.gpus {
        let n = gpu_count(g).ok_or_else(|| RenderError::BadGpus {
            id: run.id.clone(),
            value: g.clone(),
        })?;
        let _ = writeln!(
            s,
            "          resources:\n            limits:\n              nvidia.com/gpu: {n}"
        );
    }
    if with_src {
        let _ = writeln!(
            s,
            "          volumeMounts:\n            - name: src\n              mountPath: {}",
            y(&workdir)
        );
    }
    Ok(s)
}

/// A label value (at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends).
fn label_value(id: &str) -> String {
    let v: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// GPUs to request for a `--gpus` value, in the forms docker and podman take: `N` (N >= 1),
/// `all` (1: a scheduler cannot express "every GPU of the node"), `count=N`, `count=all`,
/// `device=a,b` (2), optionally in double quotes. `None` for anything else (`0`, `garbage`,
/// `-1`, `device=`), which must be refused rather than guessed as 1.
pub(crate) fn gpu_count(gpus: &str) -> Option<u32> {
    let g = gpus.trim();
    let g = g
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(g);
    let count = |n: &str| -> Option<u32> {
        if n == "all" {
            return Some(1);
        }
        // Digits only: `+2` and ` 2` are not counts either.
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse::<u32>().ok().filter(|&n| n >= 1)
    };
    if let Some(list) = g.strip_prefix("device=") {
        let ids: Vec<&str> = list.split(',').collect();
        let ok = ids.iter().all(|id| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
        });
        return (ok && !ids.is_empty())
            .then(|| u32::try_from(ids.len()).ok())
            .flatten();
    }
    count(g.strip_prefix("count=").unwrap_or(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Arg;
    use crate::script::sample_run;

    fn pinned() -> K8sOptions {
        K8sOptions {
            git_image: Some(format!("{SUGGESTED_GIT_IMAGE}@sha256:{}", "ab".repeat(32))),
            ..K8sOptions::default()
        }
    }

    #[test]
    fn job_parses_and_carries_the_argv() {
        let mut run = sample_run();
        run.command
            .retain(|a| std::str::from_utf8(a.as_bytes()).is_ok());
        let yaml = render(&run, &pinned()).unwrap();
        assert!(!yaml.contains(":latest"), "{yaml}");
        let v: yaml_serde::Value = yaml_serde::from_str(&yaml).unwrap();
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        let mut got = vec![c["command"][0].as_str().unwrap().to_string()];
        for a in c["args"].as_sequence().unwrap() {
            got.push(a.as_str().unwrap().to_string());
        }
        let want: Vec<String> = run.command.iter().map(Arg::to_string_lossy).collect();
        assert_eq!(got, want);
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"].as_u64(), Some(1));
        assert_eq!(v["spec"]["backoffLimit"].as_u64(), Some(0));
    }

    #[test]
    fn the_manifest_says_what_the_plans_registry_needs_from_the_nodes() {
        let mut run = sample_run();
        run.command
            .retain(|a| std::str::from_utf8(a.as_bytes()).is_ok());
        let text = render(&run, &pinned()).unwrap();
        assert!(!text.contains("# Registry:"), "{text}");
        let mut opts = pinned();
        opts.registry.insecure = true;
        opts.registry.ca_files = vec!["/ca.pem".into()];
        let text = render(&run, &opts).unwrap();
        assert!(
            text.contains("# Registry:   registry.example.com is insecure (plain HTTP)"),
            "{text}"
        );
        assert!(text.contains("trusted a private CA"), "{text}");
    }

    #[test]
    fn the_checkout_image_must_be_pinned_by_digest() {
        let mut run = sample_run();
        run.command
            .retain(|a| std::str::from_utf8(a.as_bytes()).is_ok());
        for bad in [
            None,
            Some("docker.io/alpine/git:latest"),
            Some("docker.io/alpine/git"),
            Some("alpine/git@sha256:abc"),
            Some("@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        ] {
            let opts = K8sOptions {
                git_image: bad.map(String::from),
                ..K8sOptions::default()
            };
            let err = render(&run, &opts).unwrap_err();
            assert!(
                matches!(err, RenderError::UnpinnedGitImage { .. }),
                "{bad:?}: {err}"
            );
        }
        let yaml = render(&run, &pinned()).unwrap();
        let v: yaml_serde::Value = yaml_serde::from_str(&yaml).unwrap();
        assert_eq!(
            v["spec"]["template"]["spec"]["initContainers"][0]["image"].as_str(),
            pinned().git_image.as_deref()
        );
        // A run without a commit needs no checkout, hence no git image.
        run.code = None;
        let yaml = render(&run, &K8sOptions::default()).unwrap();
        assert!(!yaml.contains("initContainers"), "{yaml}");
    }

    #[test]
    fn a_garbage_gpu_value_is_refused_not_rounded_to_one() {
        let mut run = sample_run();
        run.command
            .retain(|a| std::str::from_utf8(a.as_bytes()).is_ok());
        run.exec.gpus = Some("garbage".into());
        let err = render(&run, &pinned()).unwrap_err();
        assert!(matches!(err, RenderError::BadGpus { .. }), "{err}");
        assert!(err.to_string().contains("\"garbage\""), "{err}");
        let err = crate::script::slurm::render(&run, &Default::default()).unwrap_err();
        assert!(matches!(err, RenderError::BadGpus { .. }), "{err}");
    }

    #[test]
    fn gpu_values_are_counted_or_refused() {
        for (v, n) in [
            ("2", Some(2)),
            ("all", Some(1)),
            ("count=4", Some(4)),
            ("count=all", Some(1)),
            ("device=0,1,3", Some(3)),
            ("\"device=GPU-3a4b,1\"", Some(2)),
            ("garbage", None),
            ("0", None),
            ("-1", None),
            ("+2", None),
            ("device=", None),
            ("device=0,,1", None),
            ("2; rm -rf /", None),
            ("99999999999", None),
        ] {
            assert_eq!(gpu_count(v), n, "{v:?}");
        }
    }

    #[test]
    fn non_utf8_argument_is_refused_by_name() {
        let err = render(&sample_run(), &pinned()).unwrap_err();
        assert!(err.to_string().contains("argument 4"), "{err}");
    }
}
