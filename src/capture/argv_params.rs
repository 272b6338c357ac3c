//! Hyperparameters read from a command's arguments, so a sweep does not write each one twice
//! (`--param lr=0.1` and `--lr 0.1`). The rule (docs/params.md):
//!
//! - Only the arguments of the training program are read: after the script (`python train.py
//!   ARGS`, `torchrun … train.py ARGS`: the first argument ending in `.py`) or the module (`python -m pkg.train ARGS`); without either, every
//!   argument after the program.
//! - `--key=value` and `--key value` (a value does not start with `-`, unless it is a negative
//!   number) give `key = value`; `--flag` followed by an option or nothing gives `flag = true`.
//! - Hydra-style `key=value` (`trainer.max_epochs=3`; `+key=value` adds, `++key=value` forces;
//!   `~key` deletes and gives nothing) gives `key = value`; the key is letters, digits, `_`, `.`,
//!   `-`, `/`, starting with a letter or `_`. Such an argument after `--flag` is an override of its
//!   own, so the flag is `true` (`--amp trainer.max_epochs=3`).
//! - Single-dash options (`-n 4`), positional arguments and everything after `--` are not read.
//! - Keys are kept as typed (`--weight-decay` is `weight-decay`); the first occurrence wins.
//! - An argument that is not UTF-8 is never a key or a value (`--path <not UTF-8>` gives nothing).

use std::ffi::OsString;

/// What stands for an argument that is not UTF-8 ([`params_from_os_argv`]).
const NOT_TEXT: &str = "\u{0}";

/// [`params_from_argv`] of an argv as the OS gave it.
pub fn params_from_os_argv(command: &[OsString]) -> Vec<(String, String)> {
    let argv: Vec<String> = command
        .iter()
        .map(|a| a.to_str().unwrap_or(NOT_TEXT).to_string())
        .collect();
    params_from_argv(&argv)
}

/// The `(key, value)` pairs the arguments of `command` (program first) set, in argv order.
pub fn params_from_argv(command: &[String]) -> Vec<(String, String)> {
    let args = program_args(command);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: &str| {
        if !out.iter().any(|(have, _)| have == k) {
            out.push((k.to_string(), v.to_string()));
        }
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" {
            break;
        }
        if let Some(opt) = a.strip_prefix("--") {
            if let Some((k, v)) = opt.split_once('=') {
                if key_ok(k) {
                    push(k, v);
                }
                continue;
            }
            if !key_ok(opt) {
                continue;
            }
            match args.get(i) {
                Some(v) if v == NOT_TEXT => i += 1,
                Some(v) if !is_option(v) && hydra_pair(v).is_none() => {
                    push(opt, v);
                    i += 1;
                }
                _ => push(opt, "true"),
            }
            continue;
        }
        if a.starts_with('-') || a.starts_with('~') {
            continue;
        }
        if let Some((k, v)) = hydra_pair(a) {
            push(k, v);
        }
    }
    out
}

/// A Hydra-style override `key=value`, `+key=value` or `++key=value`: its key and value.
fn hydra_pair(a: &str) -> Option<(&str, &str)> {
    let bare = a.trim_start_matches('+');
    let (k, v) = bare.split_once('=')?;
    (key_ok(k) && a.len() - bare.len() <= 2).then_some((k, v))
}

/// The arguments of the program that trains: after a `.py` script or a `-m MODULE`.
fn program_args(command: &[String]) -> &[String] {
    let rest = command.get(1..).unwrap_or_default();
    if let Some(m) = rest.iter().position(|a| a == "-m") {
        // `python -m pkg.train ARGS`: what follows the module.
        if m + 2 <= rest.len() && rest[..m].iter().all(|a| a.starts_with('-')) {
            return &rest[(m + 2).min(rest.len())..];
        }
    }
    match rest
        .iter()
        .position(|a| a.ends_with(".py") && !a.starts_with('-'))
    {
        Some(p) => &rest[p + 1..],
        None => rest,
    }
}

/// Whether `s` is an option rather than a value (a negative number is a value).
fn is_option(s: &str) -> bool {
    s.starts_with('-') && s.len() > 1 && s.parse::<f64>().is_err()
}

/// A key: starts with a letter or `_`, then letters, digits, `_`, `.`, `-`, `/`.
fn key_ok(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cmd: &str) -> Vec<(String, String)> {
        let argv: Vec<String> = cmd.split(' ').map(String::from).collect();
        params_from_argv(&argv)
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_documented_forms() {
        assert_eq!(
            p("python3 train.py --lr 0.1 --epochs=5 --verbose --wd -1e-4 --amp"),
            kv(&[
                ("lr", "0.1"),
                ("epochs", "5"),
                ("verbose", "true"),
                ("wd", "-1e-4"),
                ("amp", "true")
            ])
        );
        assert_eq!(
            p("python train.py trainer.max_epochs=3 +model.depth=4 ++seed=7 ~callbacks data/x.csv"),
            kv(&[("trainer.max_epochs", "3"), ("model.depth", "4"), ("seed", "7")])
        );
        assert_eq!(
            p("python3 -u -m pkg.train --batch-size 32"),
            kv(&[("batch-size", "32")])
        );
        // The launcher's own options are not the model's.
        assert_eq!(
            p("torchrun --nproc_per_node 2 train.py --lr 0.01"),
            kv(&[("lr", "0.01")])
        );
        // No script: every argument after the program.
        assert_eq!(
            p("./train --lr 0.3 -n 4 pos -- --after 1"),
            kv(&[("lr", "0.3")])
        );
    }

    #[test]
    fn odd_arguments_give_nothing_or_the_first_value() {
        assert_eq!(
            p("python3 train.py --lr 0.1 --lr 0.2"),
            kv(&[("lr", "0.1")])
        );
        assert_eq!(
            p("python3 train.py --config other.py --lr 1"),
            kv(&[("config", "other.py"), ("lr", "1")])
        );
        assert_eq!(p("python3 train.py --=x --9 1 =x +++a=1 a..b"), kv(&[]));
        assert_eq!(
            p("python3 train.py --out /tmp/-x"),
            kv(&[("out", "/tmp/-x")])
        );
        assert_eq!(p("python3"), kv(&[]));
        use std::os::unix::ffi::OsStringExt;
        let argv: Vec<OsString> = vec![
            "python3".into(),
            "t.py".into(),
            "--path".into(),
            OsString::from_vec(vec![0xff, 0xfe]),
            "--lr".into(),
            "1".into(),
        ];
        assert_eq!(params_from_os_argv(&argv), kv(&[("lr", "1")]));
        assert_eq!(p("python3 train.py"), kv(&[]));
        assert_eq!(p("sh -c echo"), kv(&[]));
    }
}
