//! Host facts: host name, user, OS/arch, boot id, pid namespace, process start times and the
//! clock. (Whether a recorded wrapper is alive is decided in `store::liveness`.)

use chrono::{DateTime, Utc};

/// The current time, or `REPRO_NOW` (RFC 3339) when set — a seam for deterministic tests.
pub fn now() -> DateTime<Utc> {
    if let Ok(s) = std::env::var("REPRO_NOW") {
        if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
            return t.with_timezone(&Utc);
        }
    }
    Utc::now()
}

/// RFC 3339 UTC with millisecond precision, the form stored in the database.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    crate::record::rfc3339(t)
}

/// This process's facts for a run it starts now (`Run::start`).
pub fn start_facts() -> crate::record::StartFacts {
    crate::record::StartFacts {
        started: now(),
        host: hostname(),
        user: username(),
        platform: platform(),
        pid: std::process::id() as i64,
        boot_id: boot_id(),
        pid_start: process_start(std::process::id()),
        pid_ns: pid_namespace(),
        scheduler: super::scheduler::from_process(),
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its full length and gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !name.is_empty() {
            return name;
        }
    }
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The user running repro.
pub fn username() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// The host platform in OCI terms (`linux/amd64`, `linux/arm64`, …).
pub fn platform() -> String {
    format!(
        "{}/{}",
        std::env::consts::OS,
        oci_arch(std::env::consts::ARCH)
    )
}

/// Maps a Rust architecture name to its OCI name.
pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The Linux boot id; changes at every boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`).
pub fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Inode of this process's pid namespace (`/proc/self/ns/pid`); two processes with the same
/// inode see the same pids.
pub fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_start_time() {
        let me = std::process::id();
        assert!(process_start(me).is_some());
        assert_eq!(process_start(me), process_start(me));
        assert!(process_start(u32::MAX - 1).is_none());
    }

    #[test]
    fn platform_uses_oci_names() {
        let p = platform();
        assert!(p.starts_with("linux/"));
        assert!(!p.contains("x86_64"));
    }
}
