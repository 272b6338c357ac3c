//! The machine part of a run's environment: OS and kernel (`/etc/os-release`, `uname`), CPU
//! (`/proc/cpuinfo`), memory (`/proc/meminfo`), lock-file digests and the allow-listed variables.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::record::environment::{Cpu, LockFile, Os};

/// The variables recorded by default (`record_env`): they change results and hold no secrets.
pub const DEFAULT_VARS: &[&str] = &[
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_LAUNCH_BLOCKING",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "PYTHONHASHSEED",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "XLA_FLAGS",
    "NCCL_ALGO",
    "NCCL_PROTO",
    "PYTORCH_CUDA_ALLOC_CONF",
];

/// The lock files whose digests a run records, by name at the repository root.
pub fn is_lock_file(name: &str) -> bool {
    matches!(
        name,
        "uv.lock" | "poetry.lock" | "environment.yml" | "conda-lock.yml" | "pixi.lock"
    ) || (name.starts_with("requirements") && name.ends_with(".txt"))
}

/// The lock files directly in `root`, sorted by name, with their SHA-256.
pub fn lock_files(root: &Path) -> Vec<LockFile> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<LockFile> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if !is_lock_file(&name) || !e.file_type().ok()?.is_file() {
                return None;
            }
            let bytes = std::fs::read(e.path()).ok()?;
            Some(LockFile {
                path: name,
                sha256: hex::encode(Sha256::digest(&bytes)),
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The allow-listed variables that are set, secret-looking names left out whatever the list says.
pub fn vars(names: &[String], var: &dyn Fn(&str) -> Option<OsString>) -> BTreeMap<String, String> {
    names
        .iter()
        .filter(|n| !super::env::looks_secret(n))
        .filter_map(|n| Some((n.clone(), var(n)?.to_string_lossy().into_owned())))
        .collect()
}

/// The OS (`/etc/os-release`) and kernel release.
pub fn os() -> Option<Os> {
    let release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok();
    let kv = release.as_deref().map(parse_os_release).unwrap_or_default();
    Some(Os {
        name: kv.get("NAME").cloned(),
        version: kv.get("VERSION_ID").cloned(),
        kernel: kernel_release(),
    })
}

/// `KEY=value` / `KEY="value"` lines of os-release.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn kernel_release() -> Option<String> {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The CPU model and logical processor count.
pub fn cpu() -> Option<Cpu> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    Some(parse_cpuinfo(&text))
}

/// Parses `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut model = None;
    let mut cores = 0;
    for l in text.lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        match k.trim() {
            "processor" => cores += 1,
            "model name" | "Hardware" | "cpu model" if model.is_none() => {
                model = Some(v.trim().to_string())
            }
            _ => {}
        }
    }
    Cpu { model, cores }
}

/// `MemTotal` in bytes.
pub fn memory_bytes() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemTotal` of `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let c = parse_cpuinfo(
            "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n",
        );
        assert_eq!(c.cores, 2);
        assert_eq!(c.model.as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(
            parse_meminfo("MemTotal:       25165824 kB\nMemFree: 1 kB\n"),
            Some(25165824 * 1024)
        );
        let os = parse_os_release("NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n");
        assert_eq!(os["NAME"], "Debian GNU/Linux");
        assert_eq!(os["VERSION_ID"], "12");
    }

    #[test]
    fn lock_file_names() {
        for n in [
            "uv.lock",
            "requirements.txt",
            "requirements-dev.txt",
            "pixi.lock",
        ] {
            assert!(is_lock_file(n), "{n}");
        }
        for n in ["README.md", "requirements.in", "Cargo.lock"] {
            assert!(!is_lock_file(n), "{n}");
        }
    }

    #[test]
    fn secret_looking_names_are_never_recorded() {
        let names = vec!["OMP_NUM_THREADS".to_string(), "HF_TOKEN".to_string()];
        let v = vars(&names, &|_| Some("x".into()));
        assert_eq!(v.keys().collect::<Vec<_>>(), ["OMP_NUM_THREADS"]);
    }
}
