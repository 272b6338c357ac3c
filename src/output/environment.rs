//! Renderings of a run's environment (docs/environment.md): the one-line summary of `show` and
//! the drift lines of `diff`.

use crate::ops::env_drift::{counts, Change};
use crate::record::environment::Environment;
use crate::sanitize::escape;

/// `environment  python 3.11.2 (venv, 143 packages) · 2 lock files · Debian 12, 6.1 kernel,
/// 2 CPUs, 24 GiB · no GPU`, and a `gpus` line per GPU model when there are some.
pub fn summary_text(e: &Environment) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &e.python {
        parts.push(format!(
            "python {} ({}, {} packages)",
            escape(p.version.as_deref().unwrap_or("?")),
            p.kind.as_str(),
            p.packages.len()
        ));
    }
    match e.lockfiles.len() {
        0 => {}
        1 => parts.push("1 lock file".into()),
        n => parts.push(format!("{n} lock files")),
    }
    let mut host = Vec::new();
    if let Some(os) = &e.os {
        let name = os
            .name
            .as_deref()
            .and_then(|n| n.split_whitespace().next())
            .unwrap_or("");
        let v = os.version.as_deref().unwrap_or("");
        let both = format!("{name} {v}");
        if !both.trim().is_empty() {
            host.push(escape(both.trim()).into_owned());
        }
        if let Some(k) = &os.kernel {
            let short: Vec<&str> = k.split(['.', '-']).take(2).collect();
            host.push(format!("{} kernel", escape(&short.join("."))));
        }
    }
    if let Some(c) = &e.cpu {
        host.push(format!("{} CPUs", c.cores));
    }
    if let Some(m) = e.memory_bytes {
        host.push(format!("{} GiB", (m as f64 / (1u64 << 30) as f64).round()));
    }
    if !host.is_empty() {
        parts.push(host.join(", "));
    }
    if e.gpus.is_empty() {
        parts.push("no GPU".into());
    } else {
        let g = &e.gpus[0];
        parts.push(format!(
            "{} × {} (driver {}, CUDA {})",
            e.gpus.len(),
            escape(&g.model),
            escape(g.driver.as_deref().unwrap_or("?")),
            escape(g.cuda.as_deref().unwrap_or("?"))
        ));
    }
    format!("{:<12} {}\n", "environment", parts.join(" · "))
}

/// The environment part of `repro diff`: the counts, then one line per change.
pub fn drift_text(changes: &[Change]) -> String {
    if changes.is_empty() {
        return format!("{:<12} same\n", "environment");
    }
    let (added, removed, changed) = counts(changes);
    let mut s = format!(
        "{:<12} {added} added, {removed} removed, {changed} changed\n",
        "environment"
    );
    for c in changes {
        let sign = match (&c.old, &c.new) {
            (None, _) => "+",
            (_, None) => "-",
            _ => "~",
        };
        s.push_str(&format!(
            "  {sign} {:<8} {}\n",
            c.area.as_str(),
            escape(&c.short())
        ));
    }
    s
}

/// The environment part of `repro diff --json`.
pub fn drift_json(changes: &[Change]) -> serde_json::Value {
    let (added, removed, changed) = counts(changes);
    serde_json::json!({
        "added": added,
        "removed": removed,
        "changed": changed,
        "changes": changes.iter().map(|c| serde_json::json!({
            "area": c.area.as_str(),
            "name": c.name,
            "old": c.old,
            "new": c.new,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::environment::{Cpu, LockFile, Os, PythonEnv, PythonKind};

    #[test]
    fn summary_line_reads_like_the_issue() {
        let e = Environment {
            python: Some(PythonEnv {
                executable: "/v/bin/python".into(),
                version: Some("3.11.2".into()),
                kind: PythonKind::Venv,
                packages: (0..143).map(|i| (format!("p{i}"), "1".into())).collect(),
                local: Default::default(),
            }),
            lockfiles: vec![
                LockFile {
                    path: "uv.lock".into(),
                    sha256: "0".repeat(64),
                };
                2
            ],
            os: Some(Os {
                name: Some("Debian GNU/Linux".into()),
                version: Some("12".into()),
                kernel: Some("6.1.0-18-amd64".into()),
            }),
            cpu: Some(Cpu {
                model: None,
                cores: 2,
            }),
            memory_bytes: Some(24 << 30),
            ..Environment::default()
        };
        assert_eq!(
            summary_text(&e),
            "environment  python 3.11.2 (venv, 143 packages) · 2 lock files · Debian 12, 6.1 kernel, 2 CPUs, 24 GiB · no GPU\n"
        );
    }
}
