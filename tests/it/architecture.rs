//! The layer order of ARCHITECTURE.md, checked against the code: every `crate::…` path under
//! `src/` names a top-level module on a lower line than the file's own module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The ```layers block of ARCHITECTURE.md: module name → line index (0 = top).
fn layers(doc: &str) -> BTreeMap<String, usize> {
    let start = doc
        .find("```layers\n")
        .expect("ARCHITECTURE.md has a ```layers block");
    let body = &doc[start + "```layers\n".len()..];
    let end = body.find("```").expect("the ```layers block is closed");
    let mut out = BTreeMap::new();
    for (i, line) in body[..end].lines().enumerate() {
        for name in line.split_whitespace() {
            assert!(
                out.insert(name.to_string(), i).is_none(),
                "{name} is listed twice in ARCHITECTURE.md"
            );
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names through `crate::`: `crate::a::…`, and each name
/// of a group `crate::{a, b::c}`. Comments are skipped.
fn crate_modules(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `mycrate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                // Only the first segment of each member matters; nested braces belong to it.
                let mut depth = 0;
                let mut member = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            push_first(&member, n, &mut out);
                            member.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        member.push(c);
                    }
                }
                push_first(&member, n, &mut out);
            } else {
                push_first(rest, n, &mut out);
            }
        }
    }
    out
}

fn push_first(path: &str, line: usize, out: &mut Vec<(usize, String)>) {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() && name != "self" {
        out.push((line + 1, name));
    }
}

#[test]
fn imports_run_downward_as_architecture_md_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let order = layers(&doc);
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let Some(&mine) = order.get(&module) else {
            wrong.push(format!(
                "src/{}: module `{module}` is not in ARCHITECTURE.md's layers",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (line, used) in crate_modules(&text) {
            if used == module {
                continue;
            }
            match order.get(&used) {
                None => wrong.push(format!(
                    "src/{}:{line}: `crate::{used}` is not in ARCHITECTURE.md's layers",
                    rel.display()
                )),
                Some(&theirs) if theirs <= mine => wrong.push(format!(
                    "src/{}:{line}: `{module}` uses `crate::{used}`, which is {} it",
                    rel.display(),
                    if theirs == mine { "beside" } else { "above" }
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run against ARCHITECTURE.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_groups_nested_paths_and_skips_comments() {
    let text = "use crate::{store::Store, record::{Run, Status}, self};\n\
                let x = crate::ops::run::run(); // crate::cli::x\n\
                mycrate::cli::x();\n";
    let found: Vec<String> = crate_modules(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["store", "record", "ops"]);
    let order = layers("```layers\ncli\nops store\nrecord\n```\n");
    assert_eq!(order["cli"], 0);
    assert_eq!(order["store"], 1);
    assert_eq!(order["record"], 2);
}
