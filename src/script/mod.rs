//! Re-run targets (bash, Kubernetes Job, Slurm) rendered from a recorded run, and shell quoting.
//!
//! The bash and Slurm targets share everything up to the final command: the option parsing,
//! the preflight, the work directory, the code checkout with the recorded patch and the dataset
//! verification are built here, once. Every recorded value reaches a script through [`quote`].

pub mod bash;
pub mod k8s;
pub mod plan;
pub mod quote;
pub mod slurm;
mod venv;

use std::fmt::Write as _;

use base64::Engine as _;

use crate::capture::image::registry::RegistryOptions;
use crate::record::{Code, DatasetKind, ExecMode, Image, Run};

pub use plan::{container_dirs, DEFAULT_WORKDIR};

/// Why a run cannot be rendered for a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A recorded value holds a NUL byte.
    #[error("{what} of run {id} {source}")]
    Nul {
        id: String,
        what: String,
        source: quote::QuoteError,
    },
    /// A value that must be text is not valid UTF-8 (Kubernetes manifests are text).
    #[error("{what} of run {id} is not valid UTF-8 ({lossy}), which a Kubernetes manifest cannot represent")]
    NotUtf8 {
        id: String,
        what: String,
        lossy: String,
    },
    /// A recorded value is malformed (a commit that is not hex, a bad env var name, …).
    #[error("run {id} has an invalid {what}: {value}")]
    Invalid {
        id: String,
        what: String,
        value: String,
    },
    /// The recorded `--gpus` value is not one a scheduler's GPU count can be derived from.
    #[error(
        "run {id} has a GPU request (--gpus) {value:?} that is not N, all, count=N or device=LIST"
    )]
    BadGpus { id: String, value: String },
    /// The Kubernetes checkout container's image is not pinned by digest.
    #[error("the checkout init container's image {reference} is not pinned by digest")]
    UnpinnedGitImage { reference: String },
    /// The target needs something the run did not record.
    #[error("run {id} cannot be rendered for {target}: {reason}")]
    Unsupported {
        id: String,
        target: &'static str,
        reason: String,
    },
    /// A CA certificate of the pull cannot be embedded.
    #[error(transparent)]
    Ca(#[from] plan::CaError),
}

impl crate::error::Hinted for RenderError {
    fn hint(&self) -> Option<String> {
        match self {
            RenderError::NotUtf8 { .. } => {
                Some("use `repro script ID --target bash` or `--target slurm`, which reproduce any bytes".into())
            }
            RenderError::BadGpus { .. } => Some(
                "use `repro script ID --target bash` (the engine reads --gpus itself), or edit the GPU limit of the rendered file by hand".into(),
            ),
            RenderError::UnpinnedGitImage { .. } => Some(format!(
                "the Job checks out the run's commit in an init container that needs sh, git, base64 and sha256sum; \
                 pass one pinned by digest: --git-image {}@sha256:<digest> (the digest: `skopeo inspect --format '{{{{.Digest}}}}' docker://{}:<version>`)",
                k8s::SUGGESTED_GIT_IMAGE,
                k8s::SUGGESTED_GIT_IMAGE
            )),
            RenderError::Unsupported { .. } => {
                Some("use `repro script ID --target bash`, which handles every recorded run".into())
            }
            RenderError::Ca(e) => e.hint(),
            _ => None,
        }
    }
}

pub use crate::exec::Engine;

/// Where the re-run happens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A bash script using docker or podman
    #[default]
    Bash,
    /// A Kubernetes batch/v1 Job manifest (YAML)
    K8s,
    /// An sbatch script running the image with Apptainer
    Slurm,
}

/// What a script is rendered with besides the record.
#[derive(Debug, Clone, Default)]
pub struct ScriptOptions {
    pub target: Target,
    /// Engine of the bash script (default: the recorded one).
    pub engine: Option<Engine>,
    /// Registry options given now (flags, configuration, certs.d): they add to what the run
    /// recorded ([`plan::RegistryFlags::for_run`]).
    pub registry: RegistryOptions,
    /// Container runtime of the Slurm script.
    pub runtime: slurm::Runtime,
    /// The Kubernetes checkout image, pinned by digest.
    pub git_image: Option<String>,
    /// The recorded archives a pull falls back to.
    pub fallback: Option<plan::PullFallback>,
    /// A host run's recorded Python: the bash script first builds a fresh venv with its
    /// distributions pinned (`repro script --recreate-env`).
    pub python_env: Option<crate::record::environment::PythonEnv>,
}

/// Renders `run` for `opts.target` from its one engine plan: `repro script` and the MLflow
/// `repro/rerun.sh` both call this, so for the same options they are the same bytes.
pub fn render(run: &Run, opts: &ScriptOptions) -> Result<String, RenderError> {
    // An imported record could send the script out of its checkout (`cd ../../..`).
    crate::record::paths::check_run(run).map_err(|value| RenderError::Invalid {
        id: run.id.clone(),
        what: "directory".into(),
        value,
    })?;
    let registry = plan::RegistryFlags::for_run(run, &opts.registry);
    // Every CA that applies to the registry is embedded (never a client key), each recorded
    // one checked against its recorded SHA-256; only a container pull needs them.
    let container = run.exec.mode == ExecMode::Container && run.image.is_some();
    let ca_pem = if container && opts.target != Target::K8s {
        plan::ca_pem(run, &registry)?
    } else {
        None
    };
    let bash_opts = bash::BashOptions {
        engine: opts.engine,
        registry: registry.clone(),
        ca_pem,
        fallback: opts.fallback.clone(),
        python_env: opts.python_env.clone(),
    };
    match opts.target {
        Target::Bash => bash::render(run, &bash_opts),
        Target::K8s => k8s::render(
            run,
            &k8s::K8sOptions {
                git_image: opts.git_image.clone(),
                registry,
            },
        ),
        Target::Slurm => slurm::render(
            run,
            &slurm::SlurmOptions {
                runtime: opts.runtime,
                engine: bash_opts,
            },
        ),
    }
}

/// Context for quoting one run's values: errors name the run and the value.
pub(crate) struct Quoter<'a> {
    pub id: &'a str,
}

impl Quoter<'_> {
    /// One bash word for `value`; `what` names it in the error ("argument 3", "env value of X").
    pub fn word(&self, what: impl FnOnce() -> String, value: &[u8]) -> Result<String, RenderError> {
        quote::bash(value).map_err(|source| RenderError::Nul {
            id: self.id.to_string(),
            what: what(),
            source,
        })
    }

    /// One bash word for a UTF-8 value.
    pub fn str(&self, what: &str, value: &str) -> Result<String, RenderError> {
        self.word(|| what.to_string(), value.as_bytes())
    }

    /// A status line printed by the script's `note` function; any recorded value in `message`
    /// is quoted with it (control characters become `$'\xNN'`, so the line stays one line).
    pub fn note(&self, message: &str) -> String {
        // The note is printed to a terminal when the script runs: recorded values in it (dataset
        // names, URIs, labels of an imported run) must not carry live control characters.
        let message = crate::sanitize::escape(message);
        format!(
            "note {}\n",
            quote::bash_str(&message).unwrap_or_else(|_| "'(unprintable)'".into())
        )
    }

    /// The final step: a status line naming `place`, then `CALL WORDS… || status=$?`, where the
    /// words end with the recorded argv.
    pub fn command_step(&self, run: &Run, place: &str, call: &str, words: &[String]) -> String {
        let mut s = self.note(&format!(
            "running {place}: {}",
            quote::display_argv(run.command.iter().map(|a| a.as_bytes()))
        ));
        s.push_str(&format!("status=0\n{call} "));
        s.push_str(&words.join(" \\\n  "));
        s.push_str(" || status=$?\n");
        s
    }

    fn invalid(&self, what: &str, value: &str) -> RenderError {
        RenderError::Invalid {
            id: self.id.to_string(),
            what: what.to_string(),
            value: quote::display(value.as_bytes()),
        }
    }
}

/// `#` comment lines: every value shown in display form so no recorded newline ends a comment.
pub(crate) fn header_comments(run: &Run, title: &str) -> String {
    let d = |s: &str| quote::display(s.as_bytes());
    // Must precede the first command to apply to the whole file. SC1003/SC2016/SC2088: recorded
    // values are single-quoted on purpose (`$`, backticks, quotes, a leading `~` are data);
    // SC2317: the helper functions are called through `run` and shellcheck cannot see it.
    let mut h = String::from("# shellcheck disable=SC1003,SC2016,SC2088,SC2317\n");
    let _ = writeln!(h, "# {title}");
    let _ = writeln!(h, "#   run id:     {}", d(&run.id));
    if let Some(name) = &run.name {
        let _ = writeln!(h, "#   name:       {}", d(name));
    }
    let _ = writeln!(h, "#   started at: {}", d(&run.started_at));
    let _ = writeln!(h, "#   host:       {}", d(&run.host));
    let _ = writeln!(h, "#   user:       {}", d(&run.user));
    let _ = writeln!(h, "#   pin grade:  {}", run.pin_grade());
    let mut outcome = run.status.as_str().to_string();
    if let Some(c) = run.exit_code {
        let _ = write!(outcome, ", exit code {c}");
    }
    if let Some(s) = run.signal {
        let _ = write!(outcome, ", signal {s}");
    }
    let _ = writeln!(h, "#   outcome:    {outcome}");
    let _ = writeln!(
        h,
        "#   command:    {}",
        quote::display_argv(run.command.iter().map(|a| a.as_bytes()))
    );
    let _ = writeln!(
        h,
        "#   runs in:    {}",
        match (run.exec.mode, &run.image) {
            (ExecMode::Container, Some(_)) => "the pinned container",
            _ => "the host",
        }
    );
    if let Some(img) = &run.image {
        let _ = writeln!(
            h,
            "#   image:      {} (as written: {}, digest by: {})",
            d(&img.pinned().unwrap_or_else(|| "NOT PINNED".into())),
            d(&img.reference),
            img.resolved_by.as_str()
        );
    }
    match &run.code {
        Some(c) => {
            let _ = writeln!(
                h,
                "#   code:       commit {} on {}{}",
                d(c.commit.as_deref().unwrap_or("(none)")),
                c.branch
                    .as_deref()
                    .map(|b| format!("branch {}", d(b)))
                    .unwrap_or_else(|| "a detached HEAD".into()),
                if c.dirty { ", dirty" } else { "" }
            );
            let _ = writeln!(
                h,
                "#   remote:     {}",
                d(c.remote.as_deref().unwrap_or("(none)"))
            );
            let _ = writeln!(h, "#   repository: {}", d(&c.repo_root));
        }
        None => {
            let _ = writeln!(h, "#   code:       not in a git repository");
        }
    }
    for ds in &run.datasets {
        let _ = writeln!(
            h,
            "#   dataset:    {} ({}) {} {}",
            d(&ds.name),
            ds.kind.as_str(),
            d(ds.uri.as_deref().unwrap_or("-")),
            d(ds.digest
                .as_deref()
                .or(ds.version.as_deref())
                .unwrap_or("-"))
        );
    }
    h
}

/// Option parsing, the `note`/`die`/`run` helpers, the preflight and the work directory.
///
/// `tools` are bash words (quoted literals or `"$var"`) naming the programs the script needs.
/// `vars` are assignments placed right after `set -euo pipefail`, before the preflight uses them.
/// `before_work` runs after the preflight and before the work directory is chosen and checked
/// (the Slurm script sets a requeued attempt's used checkout aside there).
pub(crate) fn prelude(usage: &str, vars: &str, tools: &[String], before_work: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"#
# Usage: {usage} [--dry-run] [DIR]
#   DIR        an empty or missing directory to check the code out into (default: a new temp dir)
#   --dry-run  print each command, quoted, instead of running it
set -euo pipefail
{vars}
dry_run=0
work=''
while (($# > 0)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    -h | --help)
      printf 'usage: %s [--dry-run] [DIR]\n' "$0"
      exit 0
      ;;
    --)
      shift
      break
      ;;
    -*)
      printf 'unknown option: %s\n' "$1" >&2
      exit 2
      ;;
    *) break ;;
  esac
  shift
done
if (($# > 1)); then
  printf 'usage: %s [--dry-run] [DIR]\n' "$0" >&2
  exit 2
fi
work=${{1:-}}

# Status lines may carry values seen at run time (paths, engine output): a control character in
# one is shown quoted ($'\E…'), never sent to the terminal.
note() {{
  local m="$*"
  if [[ $m == *[[:cntrl:]]* ]]; then m=$(printf '%q' "$m"); fi
  printf 'repro rerun: %s\n' "$m" >&2
}}
die() {{
  note "error: $*"
  exit 1
}}
# Runs a command, or in a dry run prints it quoted so it can be pasted back into bash.
run() {{
  if ((dry_run)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}}

missing=()
for tool in {tools}; do
  command -v -- "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${{#missing[@]}} > 0)); then
  if ((dry_run)); then
    note "missing (ignored in a dry run): ${{missing[*]}}"
  else
    die "missing required tools: ${{missing[*]}}; install them and run this script again"
  fi
fi
{before_work}
if [[ -z $work ]]; then
  if ((dry_run)); then
    work=$(mktemp -d -u -t repro-rerun.XXXXXX)
  else
    work=$(mktemp -d -t repro-rerun.XXXXXX)
  fi
elif [[ -d $work && -n $(find "$work" -mindepth 1 -maxdepth 1 -print -quit) ]]; then
  die "$work is not empty; give an empty or missing directory"
fi
if ((!dry_run)); then
  mkdir -p -- "$work"
  work=$(cd -- "$work" && pwd)
fi
note "work directory: $work"
# shellcheck disable=SC2034 # unused only when the run recorded no code
src=$work
"#,
        tools = tools.join(" "),
        vars = vars,
    );
    s
}

/// Tools the shared sections need, as bash words.
pub(crate) fn shared_tools(run: &Run) -> Vec<String> {
    let mut t = Vec::new();
    if checkout_commit(run.code.as_ref()).is_some() {
        t.push("git".to_string());
        t.push("base64".to_string());
    }
    t.push("sha256sum".to_string());
    t.push("find".to_string());
    t
}

fn checkout_commit(code: Option<&Code>) -> Option<(&Code, &str)> {
    code.and_then(|c| c.commit.as_deref().map(|commit| (c, commit)))
}

fn is_hex(s: &str, lens: &[usize]) -> bool {
    lens.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The code section: clone from the remote (or the local repository), detach at the commit,
/// apply the embedded patch after checking its SHA-256. Sets nothing when no code was recorded.
pub(crate) fn checkout_section(run: &Run) -> Result<String, RenderError> {
    let q = Quoter { id: &run.id };
    let mut s = String::from("\n# --- code ---\n");
    let Some(code) = &run.code else {
        s.push_str(&q.note("the run was not in a git repository: nothing to check out"));
        return Ok(s);
    };
    let Some(commit) = code.commit.as_deref() else {
        s.push_str(&q.note(
            "WARNING: the repository had no commit when the run was recorded: nothing to check out",
        ));
        return Ok(s);
    };
    if !is_hex(commit, &[40, 64]) {
        return Err(q.invalid("commit", commit));
    }
    let _ = writeln!(s, "commit={commit}");
    let _ = writeln!(
        s,
        "repo_root={}",
        q.str("repository path", &code.repo_root)?
    );
    s.push_str(
        r#"# Clones into $src and detaches at $commit; a failed attempt leaves $src empty again.
checkout_from() {
  if run git -c protocol.ext.allow=never clone --quiet --no-checkout -- "$1" "$src" &&
    run git -C "$src" -c advice.detachedHead=false checkout --quiet --detach "$commit"; then
    return 0
  fi
  ((dry_run)) || rm -rf -- "${src:?}/.git"
  return 1
}
"#,
    );
    let branch = code
        .branch
        .as_deref()
        .map(|b| format!(" (branch {b})"))
        .unwrap_or_default();
    s.push_str(&q.note(&format!("checking out commit {commit}{branch}")));
    match &code.remote {
        Some(remote) => {
            let _ = writeln!(s, "remote={}", q.str("remote URL", remote)?);
            let _ = writeln!(s, "if ! checkout_from \"$remote\"; then");
            s.push_str("  ");
            s.push_str(&q.note(&format!(
                "commit {commit} is not available from {remote}; trying the local repository {}",
                code.repo_root
            )));
            s.push_str("  checkout_from \"$repo_root\" || die \"commit $commit is in neither the remote nor $repo_root\"\nfi\n");
        }
        None => {
            s.push_str("checkout_from \"$repo_root\" || die \"cannot check out commit $commit from $repo_root\"\n");
        }
    }
    match (&code.patch, &code.patch_sha256) {
        (Some(patch), Some(sum)) => {
            if !is_hex(sum, &[64]) {
                return Err(q.invalid("patch SHA-256", sum));
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(patch.as_bytes());
            let _ = writeln!(s, "patch_sha256={sum}");
            s.push_str(&q.note(&format!(
                "applying the recorded patch of uncommitted changes ({} bytes)",
                patch.as_bytes().len()
            )));
            s.push_str("if ((dry_run)); then\n  run git -C \"$src\" apply --binary repro-recorded.patch\nelse\n");
            s.push_str("  patch_file=$(mktemp -t repro-patch.XXXXXX)\n");
            s.push_str("  trap 'rm -f -- \"$patch_file\"' EXIT\n");
            s.push_str("  base64 -d >\"$patch_file\" <<'REPRO_PATCH_BASE64'\n");
            for chunk in b64.as_bytes().chunks(76) {
                s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                s.push('\n');
            }
            s.push_str("REPRO_PATCH_BASE64\n");
            s.push_str("  patch_sum=$(sha256sum <\"$patch_file\")\n");
            s.push_str("  [[ ${patch_sum%% *} == \"$patch_sha256\" ]] || die \"the embedded patch does not match its recorded SHA-256 $patch_sha256\"\n");
            s.push_str(
                "  git -C \"$src\" apply --binary --whitespace=nowarn \"$patch_file\"\nfi\n",
            );
        }
        _ if code.dirty => {
            s.push_str(&q.note(
                "WARNING: the run was dirty but no patch was recorded; running the clean commit",
            ));
        }
        _ => {}
    }
    Ok(s)
}

/// The shell function `dataset_digest DIR` printing `sha256:<hex>`: the canonical dataset digest
/// computed with coreutils. Kept in one place so the format can follow `capture::dataset`.
///
/// Format: SHA-256 of a manifest with one line per regular file under DIR (symlinks not followed),
/// sorted bytewise by relative path: `<sha256hex>  <size>  <relpath>\n`. A single file is hashed
/// as a manifest of one line whose relpath is its file name.
pub fn dataset_verify_snippet() -> &'static str {
    r#"# Canonical dataset digest (docs/datasets.md): sha256 of the manifest with one line per regular
# file "<sha256> <size> <relpath>" or symlink "<sha256 of target> symlink <relpath>", sorted
# bytewise by relative path; `.git` skipped. A single file (or a symlink to one) is one line
# named by the basename of the path given (a link's own name).
dataset_digest() {
  if [[ -f $1 ]]; then
    printf '%s %s %s\n' "$(sha256sum <"$1" | cut -c1-64)" "$(stat -L -c %s -- "$1")" "$(basename -- "$1")" |
      sha256sum | sed 's/^\([0-9a-f]\{64\}\).*/sha256:\1/'
    return
  fi
  (
    cd -- "$1" || exit 1
    find . -name .git -prune -o \( -type f -o -type l \) -printf '%P\0' |
      LC_ALL=C sort -z |
      while IFS= read -r -d '' f; do
        if [[ -L $f ]]; then
          printf '%s symlink %s\n' "$(readlink -n -- "$f" | sha256sum | cut -c1-64)" "$f"
        else
          printf '%s %s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$(stat -c %s -- "$f")" "$f"
        fi
      done |
      sha256sum | sed 's/^\([0-9a-f]\{64\}\).*/sha256:\1/'
  )
}
# verify_dataset PATH DIGEST: with `repro` on PATH it does the check, else the coreutils pipeline.
verify_dataset() {
  if ((dry_run)); then
    printf '+ verify_dataset %q %q\n' "$1" "$2"
    return 0
  fi
  [[ -e $1 ]] || die "dataset not found: $1"
  if command -v repro >/dev/null 2>&1; then
    repro dataset verify -- "$1" "$2" || die "dataset $1 does not match $2"
  else
    local actual
    actual=$(dataset_digest "$1")
    [[ $actual == "$2" ]] || die "dataset $1 has digest $actual, the run used $2"
  fi
}
"#
}

/// The dataset section: path datasets re-hashed and compared with the recorded digest.
///
/// A relative dataset path is looked up in the checkout first, then under the original
/// repository; one found outside the checkout is recorded in `extra_mounts` (pairs of host path
/// and path relative to the working directory) so the target can mount or link it in place.
pub(crate) fn datasets_section(run: &Run) -> Result<String, RenderError> {
    let q = Quoter { id: &run.id };
    let mut s = String::from("\n# --- datasets ---\nextra_mounts=()\n");
    let mut any = false;
    for (i, ds) in run.datasets.iter().enumerate() {
        match (ds.kind, &ds.uri, &ds.digest) {
            (DatasetKind::Path, Some(path), Some(digest)) => {
                if !any {
                    s.push_str(dataset_verify_snippet());
                    any = true;
                }
                let what = format!("path of dataset {}", i + 1);
                let _ = writeln!(s, "ds_rel={}", q.str(&what, path)?);
                let _ = writeln!(s, "ds_digest={}", q.str("dataset digest", digest)?);
                if path.starts_with('/') {
                    s.push_str("ds_path=$ds_rel\n");
                } else if checkout_commit(run.code.as_ref()).is_some() {
                    let _ = writeln!(
                        s,
                        "ds_path=$src/$ds_rel\nif [[ ! -e $ds_path && -e $repo_root/$ds_rel ]]; then\n  ds_path=$repo_root/$ds_rel\n  extra_mounts+=(\"$ds_path\" \"$ds_rel\")\nfi"
                    );
                } else {
                    let base = match &run.code {
                        Some(c) => q.str("repository path", &c.repo_root)?,
                        None => q.str("cwd", &run.cwd)?,
                    };
                    let _ = writeln!(s, "ds_path={base}/$ds_rel");
                }
                s.push_str(&q.note(&format!(
                    "verifying dataset {} ({} files, {} bytes)",
                    ds.name,
                    ds.files.map_or("?".into(), |n| n.to_string()),
                    ds.bytes.map_or("?".into(), |n| n.to_string())
                )));
                s.push_str("run verify_dataset \"$ds_path\" \"$ds_digest\"\n");
            }
            _ => {
                s.push_str(&q.note(&format!(
                    "dataset {} ({}) is not content-addressed here and is not verified: {}",
                    ds.name,
                    ds.kind.as_str(),
                    ds.uri.as_deref().or(ds.version.as_deref()).unwrap_or("-")
                )));
            }
        }
    }
    Ok(s)
}

/// The bash expression for the host directory mounted at the workdir (the checkout, or the
/// recorded cwd when there was no repository), and for the host working directory.
pub(crate) fn host_dirs(run: &Run) -> Result<(String, String), RenderError> {
    let q = Quoter { id: &run.id };
    if checkout_commit(run.code.as_ref()).is_some() {
        let cwd = if run.cwd.is_empty() || run.cwd == "." {
            "\"$src\"".to_string()
        } else {
            format!("\"$src\"/{}", q.str("cwd", &run.cwd)?)
        };
        Ok(("\"$src\"".into(), cwd))
    } else if let Some(code) = &run.code {
        // A repository without a commit: use it in place, as it is.
        let root = q.str("repository path", &code.repo_root)?;
        let cwd = if run.cwd.is_empty() || run.cwd == "." {
            root.clone()
        } else {
            format!("{root}/{}", q.str("cwd", &run.cwd)?)
        };
        Ok((root, cwd))
    } else {
        let cwd = q.str("cwd", &run.cwd)?;
        Ok((cwd.clone(), cwd))
    }
}

/// Quoted `NAME=value` words for the recorded environment, names checked.
pub(crate) fn env_words(run: &Run, prefix: &str) -> Result<Vec<String>, RenderError> {
    let q = Quoter { id: &run.id };
    run.env
        .iter()
        .map(|(k, v)| {
            check_env_name(&run.id, k)?;
            q.word(
                || format!("value of environment variable {k}"),
                format!("{prefix}{k}={v}").as_bytes(),
            )
        })
        .collect()
}

/// Environment variable names must be identifiers: they become `export`/`-e`/k8s `env` names.
pub(crate) fn check_env_name(id: &str, name: &str) -> Result<(), RenderError> {
    let ok = !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RenderError::Invalid {
            id: id.to_string(),
            what: "environment variable name".into(),
            value: quote::display(name.as_bytes()),
        })
    }
}

/// The image to run: `name@digest` when pinned, else the reference (with a warning).
pub(crate) fn image_ref(run: &Run, img: &Image) -> Result<(String, Option<String>), RenderError> {
    let q = Quoter { id: &run.id };
    let pinned = img.pinned();
    let reference = pinned.clone().unwrap_or_else(|| img.reference.clone());
    if reference.is_empty() || reference.starts_with('-') || reference.contains(char::is_whitespace)
    {
        return Err(q.invalid("image reference", &reference));
    }
    if let Some(d) = &img.digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            matches!(alg, "sha256" | "sha512") && is_hex(hex, &[64, 128])
        });
        if !ok {
            return Err(q.invalid("image digest", d));
        }
    }
    Ok((reference, img.digest.clone()))
}

/// A name usable as a Slurm job name or Kubernetes object name: `repro-rerun-<id>`.
pub(crate) fn job_name(run: &Run) -> String {
    let id: String = run
        .id
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(40)
        .collect();
    format!("repro-rerun-{id}")
}

/// The closing lines: exit with the command's status.
pub(crate) fn finish_section() -> &'static str {
    "note \"command exited with status $status\"\nexit \"$status\"\n"
}

/// A fully populated run for the renderers' unit tests.
#[cfg(test)]
pub(crate) fn sample_run() -> Run {
    use crate::record::{Arg, Dataset, Exec, ResolvedBy, Status};
    use sha2::Digest as _;
    use std::collections::BTreeMap;
    Run {
        schema_version: 1,
        id: "01jd3kq8x9v5n2m4p6r8t0w2y4".into(),
        name: Some("resnet\nbaseline".into()),
        status: Status::Failed,
        exit_code: Some(3),
        signal: None,
        started_at: "2026-11-26T14:00:00Z".into(),
        ended_at: Some("2026-11-26T14:01:00Z".into()),
        duration_ms: Some(60_000),
        command: vec![
            Arg::from("python"),
            Arg::from("train.py"),
            Arg::from("--lr=0.1"),
            Arg::from("it's $(touch pwned)\n# not a comment"),
            Arg(vec![0x61, 0xff, 0x62]),
            Arg::from(""),
        ],
        cwd: "experiments/resnet".into(),
        exec: Exec {
            mode: ExecMode::Container,
            engine: Some("docker".into()),
            workdir: Some("/workspace".into()),
            engine_args: vec!["--shm-size=1g".into()],
            gpus: Some("all".into()),
            registry: None,
        },
        image: Some(Image {
            reference: "registry.example.com/team/trainer:2.3.1".into(),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            index_digest: None,
            platform: Some("linux/amd64".into()),
            resolved_by: ResolvedBy::Registry,
            labels: BTreeMap::new(),
        }),
        code: Some(Code {
            repo_root: "/home/alice/src/proj".into(),
            remote: Some("https://git.example.com/team/proj.git".into()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            branch: Some("feature/$(touch pwned)".into()),
            dirty: true,
            untracked: vec![],
            patch_sha256: Some(format!(
                "{:x}",
                sha2::Sha256::digest(b"diff --git a/x b/x\n")
            )),
            patch: Some(Arg::from("diff --git a/x b/x\n")),
        }),
        datasets: vec![
            Dataset {
                name: "val".into(),
                kind: DatasetKind::Path,
                uri: Some("data/val".into()),
                version: None,
                digest: Some(format!("sha256:{}", "cd".repeat(32))),
                files: Some(3),
                bytes: Some(1234),
            },
            Dataset {
                name: "imagenet".into(),
                kind: DatasetKind::Uri,
                uri: Some("s3://corp-data/imagenet".into()),
                version: Some("v3".into()),
                digest: None,
                files: None,
                bytes: None,
            },
        ],
        outputs: vec![],
        params_from_argv: Vec::new(),
        params_from_job: Vec::new(),
        params: BTreeMap::new(),
        tags: vec![],
        notes: vec![],
        env: [("SEED".to_string(), "42 `id`".to_string())].into(),
        host: "gpu-box-1".into(),
        user: "alice".into(),
        platform: "linux/amd64".into(),
        pid: None,
        boot_id: None,
        pid_start: None,
        pid_ns: None,
        rerun_of: None,
        scheduler: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_checked() {
        assert!(check_env_name("x", "CUDA_VISIBLE_DEVICES").is_ok());
        assert!(check_env_name("x", "_a1").is_ok());
        assert!(check_env_name("x", "1A").is_err());
        assert!(check_env_name("x", "A=B").is_err());
        assert!(check_env_name("x", "$(x)").is_err());
        assert!(check_env_name("x", "").is_err());
    }

    #[test]
    fn hex_check() {
        assert!(is_hex(&"a".repeat(40), &[40, 64]));
        assert!(!is_hex(&"A".repeat(40), &[40, 64]));
        assert!(!is_hex("--upload-pack=x", &[40, 64]));
    }
}
