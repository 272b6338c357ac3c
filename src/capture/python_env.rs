//! The Python a command will use and its installed distributions, read from the file system
//! only (no interpreter is started: `pyvenv.cfg`, `conda-meta/`, the `lib/pythonX.Y` layout and
//! each distribution's `METADATA`/`PKG-INFO`), so a snapshot costs milliseconds.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::record::environment::{normalize_name, PythonEnv, PythonKind};

/// The Python found through the child's variables: an active `VIRTUAL_ENV`, else an active
/// `CONDA_PREFIX`, else the first `python3` or `python` on `PATH`. `None` when there is none.
pub fn capture(var: &dyn Fn(&str) -> Option<OsString>) -> Option<PythonEnv> {
    let (exe, prefix, kind) = locate(var)?;
    let cfg = read_pyvenv_cfg(&prefix);
    let version = match kind {
        PythonKind::Venv => cfg
            .get("version")
            .or_else(|| cfg.get("version_info"))
            .map(|v| release_of(v)),
        PythonKind::Conda => conda_version(&prefix),
        PythonKind::System => None,
    };
    let lib_version = lib_version(&prefix);
    let version = version.or_else(|| system_version(&prefix, lib_version.as_deref()));
    let mut dirs = site_dirs(&prefix, kind, lib_version.as_deref());
    if kind == PythonKind::Venv
        && cfg
            .get("include-system-site-packages")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        if let Some(base) = cfg.get("home").and_then(|h| Path::new(h).parent()) {
            let base_lib = lib_version.clone().or_else(|| lib_version_of(base));
            dirs.extend(site_dirs(base, PythonKind::System, base_lib.as_deref()));
        }
    }
    if kind == PythonKind::System {
        if let (Some(home), Some(v)) = (var("HOME"), lib_version.as_deref()) {
            // pip list includes the user site of a system interpreter.
            dirs.insert(
                0,
                PathBuf::from(home).join(format!(".local/lib/python{v}/site-packages")),
            );
        }
    }
    let (packages, local) = distributions(&dirs);
    Some(PythonEnv {
        executable: exe.to_string_lossy().into_owned(),
        version,
        kind,
        packages,
        local,
    })
}

/// (executable, prefix, kind) of the interpreter the child will run.
fn locate(var: &dyn Fn(&str) -> Option<OsString>) -> Option<(PathBuf, PathBuf, PythonKind)> {
    for (name, kind) in [
        ("VIRTUAL_ENV", PythonKind::Venv),
        ("CONDA_PREFIX", PythonKind::Conda),
    ] {
        if let Some(p) = var(name).filter(|p| !p.is_empty()) {
            let prefix = PathBuf::from(p);
            if let Some(exe) = ["python", "python3"]
                .iter()
                .map(|n| prefix.join("bin").join(n))
                .find(|e| e.exists())
            {
                return Some((exe, prefix, kind));
            }
        }
    }
    let path = var("PATH")?;
    for name in ["python3", "python"] {
        for dir in std::env::split_paths(&path) {
            let exe = dir.join(name);
            if !is_executable(&exe) {
                continue;
            }
            // A pyenv shim is a script: what runs is the version it selects.
            let exe = match pyenv_shim_target(&exe, var) {
                Some(Some(real)) => real,
                // pyenv's `system` version (or one not installed): the next python on PATH.
                Some(None) => continue,
                None => exe,
            };
            let dir = exe.parent().map(Path::to_path_buf).unwrap_or(dir);
            // bin/ of an environment put on PATH without activating it.
            if let Some(prefix) = dir.parent() {
                if prefix.join("pyvenv.cfg").is_file() {
                    return Some((exe, prefix.to_path_buf(), PythonKind::Venv));
                }
                if prefix.join("conda-meta").is_dir() {
                    return Some((exe, prefix.to_path_buf(), PythonKind::Conda));
                }
            }
            let real = std::fs::canonicalize(&exe).unwrap_or_else(|_| exe.clone());
            let prefix = real.parent()?.parent()?.to_path_buf();
            return Some((exe, prefix, PythonKind::System));
        }
    }
    None
}

/// For a pyenv shim (`$PYENV_ROOT/shims/python3`, a script): the interpreter it would start —
/// `Some(Some(path))`; `Some(None)` for pyenv's `system` version or one not installed; `None`
/// when `p` is not a shim. The version is `PYENV_VERSION`, else the nearest `.python-version`
/// from the working directory up, else `$PYENV_ROOT/version` (first entry of each).
fn pyenv_shim_target(p: &Path, var: &dyn Fn(&str) -> Option<OsString>) -> Option<Option<PathBuf>> {
    let shims = p.parent()?;
    let root = shims.parent()?;
    if shims.file_name()? != "shims" || !root.join("versions").is_dir() {
        return None;
    }
    let first = |t: String| t.split_whitespace().next().map(str::to_string);
    let version = var("PYENV_VERSION")
        .and_then(|v| first(v.to_string_lossy().into_owned()))
        .or_else(|| {
            let cwd = std::env::current_dir().ok()?;
            cwd.ancestors()
                .find_map(|d| std::fs::read_to_string(d.join(".python-version")).ok())
                .and_then(first)
        })
        .or_else(|| {
            std::fs::read_to_string(root.join("version"))
                .ok()
                .and_then(first)
        });
    let name = p.file_name()?;
    Some(
        version
            .filter(|v| v != "system")
            .map(|v| root.join("versions").join(v).join("bin").join(name))
            .filter(|real| is_executable(real)),
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `key = value` lines of `PREFIX/pyvenv.cfg` (empty when there is none).
fn read_pyvenv_cfg(prefix: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(prefix.join("pyvenv.cfg"))
        .map(|t| parse_pyvenv_cfg(&t))
        .unwrap_or_default()
}

/// Parses `pyvenv.cfg` text.
pub fn parse_pyvenv_cfg(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// `3.11.2.final.0` (uv's `version_info`) → `3.11.2`; `3.11.2` unchanged.
fn release_of(v: &str) -> String {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() > 3 && parts[..3].iter().all(|p| p.parse::<u32>().is_ok()) {
        parts[..3].join(".")
    } else {
        v.to_string()
    }
}

/// The `X.Y` of the one `lib/pythonX.Y` directory under `prefix`.
fn lib_version(prefix: &Path) -> Option<String> {
    lib_version_of(prefix)
}

fn lib_version_of(prefix: &Path) -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir(prefix.join("lib"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let v = n.strip_prefix("python")?;
            let (maj, min) = v.split_once('.')?;
            (maj.parse::<u32>().is_ok() && min.parse::<u32>().is_ok()).then(|| v.to_string())
        })
        .collect();
    // Several (a system with 3.11 and 3.12): the newest, as `python3` usually is.
    found.sort_by_key(|v| {
        let (a, b) = v.split_once('.').unwrap_or(("0", "0"));
        (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0))
    });
    found.pop()
}

/// A conda environment's Python from `conda-meta/python-3.11.5-h….json`.
fn conda_version(prefix: &Path) -> Option<String> {
    std::fs::read_dir(prefix.join("conda-meta"))
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix("python-")?.strip_suffix(".json")?;
            let v = rest.split('-').next()?;
            v.starts_with(|c: char| c.is_ascii_digit())
                .then(|| v.to_string())
        })
}

/// A system interpreter's version: `include/pythonX.Y/patchlevel.h` when the headers are
/// installed, else the `X.Y` of its layout.
fn system_version(prefix: &Path, lib: Option<&str>) -> Option<String> {
    let lib = lib?;
    let header = prefix.join(format!("include/python{lib}/patchlevel.h"));
    if let Ok(t) = std::fs::read_to_string(header) {
        if let Some(v) = t.lines().find_map(|l| {
            let rest = l.strip_prefix("#define PY_VERSION")?;
            Some(rest.trim().trim_matches('"').to_string())
        }) {
            return Some(v);
        }
    }
    Some(lib.to_string())
}

/// The directories `pip list` reads, in `sys.path` order.
fn site_dirs(prefix: &Path, kind: PythonKind, lib: Option<&str>) -> Vec<PathBuf> {
    let Some(v) = lib else { return Vec::new() };
    let mut dirs = vec![prefix.join(format!("lib/python{v}/site-packages"))];
    if kind == PythonKind::System {
        // Debian's layout: pip's own installs under /usr/local, the distribution's packages in
        // dist-packages.
        if prefix == Path::new("/usr") {
            dirs.insert(
                0,
                PathBuf::from(format!("/usr/local/lib/python{v}/dist-packages")),
            );
        }
        dirs.push(prefix.join(format!("lib/python{v}/dist-packages")));
        dirs.push(prefix.join("lib/python3/dist-packages"));
    }
    dirs.retain(|d| d.is_dir());
    dirs.dedup();
    dirs
}

/// The distributions in `dirs` (the first of a name wins, as on `sys.path`) and which of them
/// came from a local path or are editable.
fn distributions(dirs: &[PathBuf]) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut packages = BTreeMap::new();
    let mut local = BTreeMap::new();
    let mut seen = HashSet::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let Some(file) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let meta = if file.ends_with(".dist-info") {
                p.join("METADATA")
            } else if file.ends_with(".egg-info") {
                if p.is_dir() {
                    p.join("PKG-INFO")
                } else {
                    p.clone()
                }
            } else {
                continue;
            };
            let Some((name, version)) = read_name_version(&meta) else {
                continue;
            };
            if !seen.insert(normalize_name(&name)) {
                continue;
            }
            if file.ends_with(".dist-info") {
                if let Ok(t) = std::fs::read_to_string(p.join("direct_url.json")) {
                    if let Some(how) = local_origin(&t) {
                        local.insert(name.clone(), how.to_string());
                    }
                }
            }
            packages.insert(name, version);
        }
    }
    (packages, local)
}

/// `Name` and `Version` from the header of a `METADATA`/`PKG-INFO` file (read up to the first
/// blank line only: the description after it can be long).
fn read_name_version(path: &Path) -> Option<(String, String)> {
    let f = std::fs::File::open(path).ok()?;
    let mut name = None;
    let mut version = None;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.ok()?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = parse_header(&line) {
            match k {
                "name" => name = Some(v),
                "version" => version = Some(v),
                _ => {}
            }
            if name.is_some() && version.is_some() {
                break;
            }
        }
    }
    Some((name?, version?))
}

fn parse_header(line: &str) -> Option<(&'static str, String)> {
    let (k, v) = line.split_once(':')?;
    let k = match k.trim().to_ascii_lowercase().as_str() {
        "name" => "name",
        "version" => "version",
        _ => return None,
    };
    Some((k, v.trim().to_string()))
}

/// How a distribution with this `direct_url.json` (PEP 610) was installed, when a pinned
/// `name==version` cannot reinstall it: `editable`, `local directory` or `local file`.
pub fn local_origin(direct_url_json: &str) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_str(direct_url_json).ok()?;
    let url = v.get("url")?.as_str()?;
    if let Some(d) = v.get("dir_info") {
        if d.get("editable").and_then(|e| e.as_bool()) == Some(true) {
            return Some("editable");
        }
        return Some("local directory");
    }
    if url.starts_with("file:") {
        return Some("local file");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyvenv_cfg_and_versions_parse() {
        let cfg = parse_pyvenv_cfg(
            "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n",
        );
        assert_eq!(cfg["home"], "/usr/bin");
        assert_eq!(cfg["version"], "3.11.2");
        assert_eq!(release_of("3.12.1.final.0"), "3.12.1");
        assert_eq!(release_of("3.11.2"), "3.11.2");
    }

    #[test]
    fn direct_url_tells_local_installs() {
        assert_eq!(
            local_origin(r#"{"url": "file:///src/pkg", "dir_info": {"editable": true}}"#),
            Some("editable")
        );
        assert_eq!(
            local_origin(r#"{"url": "file:///src/pkg", "dir_info": {}}"#),
            Some("local directory")
        );
        assert_eq!(
            local_origin(r#"{"url": "file:///w/x-1.0-py3-none-any.whl", "archive_info": {}}"#),
            Some("local file")
        );
        assert_eq!(
            local_origin(r#"{"url": "https://x/y.whl", "archive_info": {}}"#),
            None
        );
    }

    #[test]
    fn a_made_up_prefix_reads_like_pip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join("pyvenv.cfg"),
            "home = /nowhere/bin\nversion = 3.10.4\n",
        )
        .unwrap();
        std::fs::create_dir_all(p.join("bin")).unwrap();
        std::fs::write(p.join("bin/python"), "").unwrap();
        let sp = p.join("lib/python3.10/site-packages");
        let di = sp.join("Foo_Bar-1.2.dist-info");
        std::fs::create_dir_all(&di).unwrap();
        std::fs::write(
            di.join("METADATA"),
            "Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.2\n\nName: not-this\n",
        )
        .unwrap();
        std::fs::write(
            sp.join("old-0.1-py3.10.egg-info"),
            "Name: old\nVersion: 0.1\n",
        )
        .unwrap();
        let root = p.to_path_buf();
        let env =
            capture(&|k| (k == "VIRTUAL_ENV").then(|| root.clone().into_os_string())).unwrap();
        assert_eq!(env.kind, PythonKind::Venv);
        assert_eq!(env.version.as_deref(), Some("3.10.4"));
        assert_eq!(env.packages.len(), 2);
        assert_eq!(env.packages["Foo_Bar"], "1.2");
        assert_eq!(env.packages["old"], "0.1");
    }

    /// Ported from a parallel implementation: this machine's `python3` is a pyenv shim, which
    /// recorded nothing before.
    #[test]
    fn a_pyenv_shim_leads_to_the_selected_version() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("pyenv");
        let exe = |p: &Path| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let shim = root.join("shims/python3");
        exe(&shim);
        let real = root.join("versions/3.11.7/bin/python3");
        exe(&real);
        let site = root.join("versions/3.11.7/lib/python3.11/site-packages/a-1.dist-info");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("METADATA"), "Name: a\nVersion: 1\n").unwrap();
        let path = root.join("shims").into_os_string();
        let env = |v: &str| match v {
            "PATH" => Some(path.clone()),
            "PYENV_VERSION" => Some("3.11.7".into()),
            _ => None,
        };
        let p = capture(&env).unwrap();
        assert_eq!(p.executable, real.to_string_lossy());
        assert_eq!(p.kind, PythonKind::System);
        assert!(
            p.version.as_deref().is_some_and(|v| v.starts_with("3.11")),
            "{:?}",
            p.version
        );
        assert_eq!(p.packages.len(), 1, "{:?}", p.packages);
        let system = |v: &str| match v {
            "PATH" => Some(path.clone()),
            "PYENV_VERSION" => Some("system".into()),
            _ => None,
        };
        assert!(capture(&system).is_none(), "no other python on that PATH");
    }
}
