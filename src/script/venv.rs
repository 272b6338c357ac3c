//! The optional Python-environment step of a host re-run script (`repro script
//! --recreate-env`): a fresh venv in the work directory with the recorded distributions pinned
//! (`name==version`, through `uv` when the machine has it, else `python3 -m venv` and pip, both
//! reading their own settings such as `PIP_FIND_LINKS`), then `VIRTUAL_ENV` and `PATH` pointed at
//! it for the command.

use super::{Quoter, RenderError};
use crate::record::environment::PythonEnv;
use crate::record::Run;

/// The section, placed before the run step.
pub(crate) fn section(run: &Run, p: &PythonEnv) -> Result<String, RenderError> {
    let q = Quoter { id: &run.id };
    let mut s = String::from("\n# --- python environment ---\n");
    s.push_str(&format!(
        "# The recorded Python: {} ({}); {} distribution(s).\n",
        crate::sanitize::escape(p.version.as_deref().unwrap_or("version unknown")),
        p.kind.as_str(),
        p.packages.len()
    ));
    let mut pins = Vec::new();
    for (name, version) in &p.packages {
        if let Some(why) = p.local.get(name) {
            s.push_str(&q.note(&format!(
                "cannot pin {name} {version} ({why}): not installed"
            )));
        } else {
            pins.push(q.str(&format!("the pin of {name}"), &format!("{name}=={version}"))?);
        }
    }
    s.push_str("pins=(");
    for p in &pins {
        s.push_str("\n  ");
        s.push_str(p);
    }
    s.push_str("\n)\n");
    s.push_str(
        r#"venv=$work/.venv
note "creating the Python environment $venv (${#pins[@]} pinned distribution(s))"
if command -v uv >/dev/null 2>&1; then
  run uv venv --seed --python python3 -- "$venv"
  if ((${#pins[@]} > 0)); then
    run uv pip install --no-deps --python "$venv/bin/python" -- "${pins[@]}"
  fi
else
  command -v python3 >/dev/null 2>&1 || ((dry_run)) || die "python3 is needed to recreate the environment"
  run python3 -m venv -- "$venv"
  if ((${#pins[@]} > 0)); then
    run "$venv/bin/python" -m pip install --no-deps --disable-pip-version-check -- "${pins[@]}"
  fi
fi
export VIRTUAL_ENV=$venv
export PATH=$venv/bin:$PATH
"#,
    );
    Ok(s)
}
