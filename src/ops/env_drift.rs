//! Drift between two environment snapshots (docs/environment.md): package, Python, driver,
//! CUDA and variable changes, for `repro diff` and the warning of `repro rerun`.

use std::collections::BTreeMap;

use crate::record::environment::{normalize_name, Environment};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Area {
    /// The Python interpreter (its version or kind).
    Python,
    /// An installed distribution.
    Package,
    /// The GPU driver or the CUDA version it supports.
    Driver,
    /// An allow-listed variable.
    Var,
}

impl Area {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Python => "python",
            Area::Package => "package",
            Area::Driver => "driver",
            Area::Var => "var",
        }
    }
}

/// One difference: `old` absent = added, `new` absent = removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub area: Area,
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Change {
    /// `numpy 1.26.4 → 2.0.0`, `+torch 2.3.0`, `-scipy 1.13.0`.
    pub fn short(&self) -> String {
        match (&self.old, &self.new) {
            (Some(a), Some(b)) => format!("{} {a} → {b}", self.name),
            (None, Some(b)) => format!("+{} {b}", self.name),
            (Some(a), None) => format!("-{} {a}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// The differences from `a` to `b`, Python first, then packages, drivers and variables.
pub fn drift(a: &Environment, b: &Environment) -> Vec<Change> {
    let mut out = Vec::new();
    let (pa, pb) = (a.python.as_ref(), b.python.as_ref());
    let ver = |p: Option<&crate::record::environment::PythonEnv>| {
        p.map(|p| {
            format!(
                "{} ({})",
                p.version.as_deref().unwrap_or("unknown"),
                p.kind.as_str()
            )
        })
    };
    if ver(pa) != ver(pb) {
        out.push(Change {
            area: Area::Python,
            name: "python".into(),
            old: ver(pa),
            new: ver(pb),
        });
    }
    // Matched by normalised name, shown as the newer record spells it.
    let norm =
        |p: Option<&crate::record::environment::PythonEnv>| -> BTreeMap<String, (String, String)> {
            p.map(|p| {
                p.packages
                    .iter()
                    .map(|(n, v)| (normalize_name(n), (n.clone(), v.clone())))
                    .collect()
            })
            .unwrap_or_default()
        };
    out.extend(
        compare(&norm(pa), &norm(pb))
            .into_iter()
            .map(|(name, old, new)| Change {
                area: Area::Package,
                name,
                old,
                new,
            }),
    );
    let gpu = |e: &Environment, cuda: bool| {
        e.gpus.first().and_then(|g| {
            if cuda {
                g.cuda.clone()
            } else {
                g.driver.clone()
            }
        })
    };
    for (name, cuda) in [("driver", false), ("cuda", true)] {
        let (x, y) = (gpu(a, cuda), gpu(b, cuda));
        if x != y {
            out.push(Change {
                area: Area::Driver,
                name: name.into(),
                old: x,
                new: y,
            });
        }
    }
    let vars = |e: &Environment| -> BTreeMap<String, (String, String)> {
        e.vars
            .iter()
            .map(|(k, v)| (k.clone(), (k.clone(), v.clone())))
            .collect()
    };
    out.extend(
        compare(&vars(a), &vars(b))
            .into_iter()
            .map(|(name, old, new)| Change {
                area: Area::Var,
                name,
                old,
                new,
            }),
    );
    out
}

type Triple = (String, Option<String>, Option<String>);

fn compare(
    a: &BTreeMap<String, (String, String)>,
    b: &BTreeMap<String, (String, String)>,
) -> Vec<Triple> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some((_, x)), Some((n, y))) if x != y => {
                Some((n.clone(), Some(x.clone()), Some(y.clone())))
            }
            (Some((n, x)), None) => Some((n.clone(), Some(x.clone()), None)),
            (None, Some((n, y))) => Some((n.clone(), None, Some(y.clone()))),
            _ => None,
        })
        .collect()
}

/// `added`, `removed`, `changed` counts.
pub fn counts(changes: &[Change]) -> (usize, usize, usize) {
    let added = changes.iter().filter(|c| c.old.is_none()).count();
    let removed = changes.iter().filter(|c| c.new.is_none()).count();
    (added, removed, changes.len() - added - removed)
}

/// The first `n` changes and how many more: `numpy 1.26.4 → 2.0.0, +3 more`.
pub fn headline(changes: &[Change], n: usize) -> String {
    let mut s = changes
        .iter()
        .take(n)
        .map(Change::short)
        .collect::<Vec<_>>()
        .join(", ");
    if changes.len() > n {
        s.push_str(&format!(", +{} more", changes.len() - n));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::environment::{PythonEnv, PythonKind};

    fn env(pkgs: &[(&str, &str)]) -> Environment {
        Environment {
            python: Some(PythonEnv {
                executable: "/v/bin/python".into(),
                version: Some("3.11.2".into()),
                kind: PythonKind::Venv,
                packages: pkgs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                local: BTreeMap::new(),
            }),
            ..Environment::default()
        }
    }

    #[test]
    fn packages_added_removed_changed() {
        let a = env(&[("numpy", "1.26.4"), ("scipy", "1.13.0"), ("Foo_Bar", "1")]);
        let mut b = env(&[("numpy", "2.0.0"), ("torch", "2.3.0"), ("foo-bar", "1")]);
        b.vars.insert("OMP_NUM_THREADS".into(), "4".into());
        let d = drift(&a, &b);
        assert_eq!(counts(&d), (2, 1, 1));
        assert_eq!(headline(&d, 1), "numpy 1.26.4 → 2.0.0, +3 more");
        assert!(d.iter().any(|c| c.short() == "-scipy 1.13.0"));
        assert!(d
            .iter()
            .any(|c| c.area == Area::Var && c.short() == "+OMP_NUM_THREADS 4"));
        assert!(drift(&a, &a).is_empty());
    }

    #[test]
    fn python_version_change_comes_first() {
        let a = env(&[]);
        let mut b = env(&[]);
        b.python.as_mut().unwrap().version = Some("3.12.1".into());
        let d = drift(&a, &b);
        assert_eq!(d[0].area, Area::Python);
        assert_eq!(d[0].short(), "python 3.11.2 (venv) → 3.12.1 (venv)");
    }
}
