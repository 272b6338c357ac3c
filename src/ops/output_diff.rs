//! Where two versions of an output first differ, for `rerun --check`: the original's bytes from
//! its kept copy (never the working file, which may have changed since), the re-run's from its
//! kept copy or, when it was not kept, its working file checked against its digest. Text
//! (UTF-8, no NUL, under [`TEXT_CAP`]) is compared line by line; a directory by its manifest.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::capture::dataset::{self, HashOptions};
use crate::store::kept::{parse_manifest, sha256_hex, ManifestEntry};
use crate::store::objects::Objects;

/// Larger files are not compared line by line (the digest already says they differ).
pub const TEXT_CAP: u64 = 16 << 20;

/// Where two versions of an output first differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Text that first differs at `line` (1-based); `None` on a side that has no such line.
    Lines {
        /// The file inside a directory output; `None` for a file output.
        file: Option<Vec<u8>>,
        line: usize,
        original: Option<String>,
        rerun: Option<String>,
    },
    /// A file (or link) of a directory output that only one side has.
    OnlyIn { file: Vec<u8>, original: bool },
    /// The contents differ but are not compared line by line.
    NotCompared {
        /// The first differing file inside a directory output.
        file: Option<Vec<u8>>,
        why: &'static str,
    },
    /// Nothing can be said beyond the digests.
    Unknown(&'static str),
}

/// Where one side's bytes are read from.
struct Side<'a> {
    objects: &'a Objects,
    /// The working path of this version, read only when its object is not kept (its content
    /// is checked against the digest first).
    work: Option<&'a Path>,
    /// Why nothing can be compared when neither is there.
    gone: &'static str,
}

impl Side<'_> {
    /// The bytes of a file whose SHA-256 is `sha` (at `rel` inside the output): `Err(why)`
    /// when they are not available or too large for a line comparison.
    fn file(&self, sha: &str, rel: Option<&[u8]>) -> Result<Vec<u8>, &'static str> {
        if let Ok(at) = self.objects.path_of(sha) {
            match std::fs::metadata(&at) {
                Ok(m) if m.len() > TEXT_CAP => return Err("too large to compare line by line"),
                Ok(_) => {
                    return match self.objects.read(sha) {
                        Ok(Some(b)) => Ok(b),
                        _ => Err("its kept copy is damaged"),
                    }
                }
                Err(_) => {}
            }
        }
        let Some(work) = self.work else {
            return Err(self.gone);
        };
        let at = match rel {
            Some(r) => work.join(std::ffi::OsStr::from_bytes(r)),
            None => work.to_path_buf(),
        };
        match std::fs::metadata(&at) {
            Ok(m) if m.len() > TEXT_CAP => return Err("too large to compare line by line"),
            Ok(m) if m.is_file() => {}
            _ => return Err("the re-run's output is neither kept nor in place"),
        }
        match std::fs::read(&at) {
            Ok(b) if sha256_hex(&b) == sha => Ok(b),
            _ => Err("the re-run's output changed after it was hashed"),
        }
    }

    /// The manifest of a directory output with digest `sha256:<hex>`.
    fn manifest(&self, hex: &str) -> Result<Vec<ManifestEntry>, &'static str> {
        let bytes = match self.objects.read(hex) {
            Ok(Some(b)) => b,
            _ => {
                let Some(work) = self.work else {
                    return Err(self.gone);
                };
                match dataset::manifest_of(work, &HashOptions::default()) {
                    Ok(m) if sha256_hex(&m) == hex => m,
                    _ => return Err("the re-run's output is neither kept nor in place"),
                }
            }
        };
        parse_manifest(&bytes).ok_or("the kept manifest does not parse")
    }
}

/// Where the original's output (recorded digest `old`) and the re-run's (`new`, written at
/// `new_work` when known) first differ.
pub fn first_difference(
    objects: &Objects,
    old: &str,
    new: &str,
    new_work: Option<&Path>,
) -> Difference {
    let original = Side {
        objects,
        work: None,
        gone: "the original's output is not kept",
    };
    let rerun = Side {
        objects,
        work: new_work,
        gone: "the re-run's output is not kept",
    };
    match (old.strip_prefix("sha256:"), new.strip_prefix("sha256:")) {
        (None, None) => compare_files(&original, &rerun, old, new, None),
        (Some(o), Some(n)) => match (original.manifest(o), rerun.manifest(n)) {
            (Ok(a), Ok(b)) => compare_dirs(&original, &rerun, &a, &b),
            (Err(why), _) | (_, Err(why)) => Difference::Unknown(why),
        },
        _ => Difference::Unknown("one is a file, the other a directory"),
    }
}

fn compare_files(
    original: &Side,
    rerun: &Side,
    old: &str,
    new: &str,
    rel: Option<&[u8]>,
) -> Difference {
    let not_compared = |why| Difference::NotCompared {
        file: rel.map(<[u8]>::to_vec),
        why,
    };
    let (a, b) = match (original.file(old, rel), rerun.file(new, rel)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => {
            return match rel {
                None => Difference::Unknown(why),
                Some(_) => not_compared(why),
            }
        }
    };
    match (text(&a), text(&b)) {
        (Some(a), Some(b)) => match first_line_difference(a, b) {
            Some((line, original, rerun)) => Difference::Lines {
                file: rel.map(<[u8]>::to_vec),
                line,
                original,
                rerun,
            },
            None => not_compared("the same lines"),
        },
        _ => not_compared("not text"),
    }
}

/// The first entry (in manifest order) that differs, compared as [`compare_files`] does.
fn compare_dirs(
    original: &Side,
    rerun: &Side,
    a: &[ManifestEntry],
    b: &[ManifestEntry],
) -> Difference {
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return Difference::Unknown("the same files"),
            (Some(x), None) => return only_in(x, true),
            (None, Some(y)) => return only_in(y, false),
            (Some(x), Some(y)) if x.rel() < y.rel() => return only_in(x, true),
            (Some(x), Some(y)) if x.rel() > y.rel() => return only_in(y, false),
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (
                Some(ManifestEntry::File { rel, sha256: s, .. }),
                Some(ManifestEntry::File { sha256: t, .. }),
            ) => return compare_files(original, rerun, s, t, Some(rel)),
            (Some(x), Some(_)) => {
                return Difference::NotCompared {
                    file: Some(x.rel().to_vec()),
                    why: "a symlink in one, or links to different targets",
                }
            }
        }
    }
}

fn only_in(e: &ManifestEntry, original: bool) -> Difference {
    Difference::OnlyIn {
        file: e.rel().to_vec(),
        original,
    }
}

/// The bytes as text: UTF-8 without NUL.
fn text(b: &[u8]) -> Option<&str> {
    if b.contains(&0) {
        return None;
    }
    std::str::from_utf8(b).ok()
}

/// The first line (1-based) where two texts differ, with each side's line (`None` past its
/// end); `None` when they are equal.
pub fn first_line_difference(a: &str, b: &str) -> Option<(usize, Option<String>, Option<String>)> {
    if a == b {
        return None;
    }
    let mut la = a.split_inclusive('\n');
    let mut lb = b.split_inclusive('\n');
    let mut n = 0;
    loop {
        n += 1;
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            // Only a missing final newline differs: name the line, shown as it is.
            (x, y) => {
                let strip = |s: &str| s.strip_suffix('\n').unwrap_or(s).to_string();
                return Some((n, x.map(strip), y.map(strip)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_line_is_named() {
        assert_eq!(first_line_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(
            first_line_difference("a\nb\nc\n", "a\nB\nc\n"),
            Some((2, Some("b".into()), Some("B".into())))
        );
        assert_eq!(
            first_line_difference("a\n", "a\nmore\n"),
            Some((2, None, Some("more".into())))
        );
        assert_eq!(
            first_line_difference("a\nend", "a\nend\n"),
            Some((2, Some("end".into()), Some("end".into())))
        );
    }

    fn keep(objects: &Objects, dir: &Path, files: &[(&str, &str)]) -> String {
        let _ = std::fs::remove_dir_all(dir);
        for (rel, text) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let k = crate::store::kept::keep_outputs(
            objects,
            &[dir.file_name().unwrap().to_string_lossy().into_owned()],
            dir.parent().unwrap(),
            &crate::store::kept::KeepPolicy {
                off: None,
                max_bytes: None,
            },
        );
        k.outputs[0].sha256.clone().unwrap()
    }

    #[test]
    fn a_directory_names_its_first_differing_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let objects = Objects::beside(&d.path().join("repro.db"));
        let out = d.path().join("out");
        let old = keep(
            &objects,
            &out,
            &[("a.txt", "same\n"), ("log.txt", "step 1\nloss 0.5\n")],
        );
        let new = keep(
            &objects,
            &out,
            &[("a.txt", "same\n"), ("log.txt", "step 1\nloss 0.4\n")],
        );
        assert_eq!(
            first_difference(&objects, &old, &new, None),
            Difference::Lines {
                file: Some(b"log.txt".to_vec()),
                line: 2,
                original: Some("loss 0.5".into()),
                rerun: Some("loss 0.4".into()),
            }
        );
        let extra = keep(
            &objects,
            &out,
            &[
                ("a.txt", "same\n"),
                ("b.txt", "x\n"),
                ("log.txt", "step 1\nloss 0.5\n"),
            ],
        );
        assert_eq!(
            first_difference(&objects, &old, &extra, None),
            Difference::OnlyIn {
                file: b"b.txt".to_vec(),
                original: false
            }
        );
        let bin = keep(
            &objects,
            &out,
            &[("a.txt", "same\n"), ("log.txt", "step\0 1\n")],
        );
        assert_eq!(
            first_difference(&objects, &old, &bin, None),
            Difference::NotCompared {
                file: Some(b"log.txt".to_vec()),
                why: "not text"
            }
        );
    }

    #[test]
    fn a_rerun_output_not_kept_is_read_in_place_when_it_still_has_its_digest() {
        let d = tempfile::tempdir().unwrap();
        let objects = Objects::beside(&d.path().join("repro.db"));
        let old = objects.store_bytes(b"count=1\n").unwrap();
        let work = d.path().join("count.txt");
        std::fs::write(&work, b"count=2\n").unwrap();
        let new = sha256_hex(b"count=2\n");
        assert_eq!(
            first_difference(&objects, &old, &new, Some(&work)),
            Difference::Lines {
                file: None,
                line: 1,
                original: Some("count=1".into()),
                rerun: Some("count=2".into()),
            }
        );
        std::fs::write(&work, b"count=3\n").unwrap();
        assert!(matches!(
            first_difference(&objects, &old, &new, Some(&work)),
            Difference::Unknown(_)
        ));
        // The original's side is never read from a working file.
        let gone = sha256_hex(b"never kept\n");
        assert_eq!(
            first_difference(&objects, &gone, &new, Some(&work)),
            Difference::Unknown("the original's output is not kept")
        );
    }
}
