//! Dataset digests, the hash cache, `--dataset` specs, DVC, outputs and verification.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use repro::capture::dataset::{
    capture, hash_output, hash_path, manifest_of, parse_spec, DatasetDigest, DatasetError,
    DatasetSpec, HashOptions,
};
use repro::record::DatasetKind;
use repro::store::Store;

use crate::support::TestEnv;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn digest(p: &Path) -> String {
    hash(p).digest
}

fn hash(p: &Path) -> DatasetDigest {
    hash_path(p, &HashOptions::default(), None, None).unwrap()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// A tree with awkward names: spaces, unicode, a name that sorts between `a` and `a/…`, empty
/// files, a file bigger than one read buffer, a symlink, an empty dir and a `.git` to skip.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a/b", b"first".to_vec()),
        ("a-c", b"sorts before a/ bytewise".to_vec()),
        ("a b/with space.txt", b"x".to_vec()),
        ("ünï/cödé", "unicode".as_bytes().to_vec()),
        ("empty", Vec::new()),
        ("deep/er/and/deeper/leaf.bin", vec![7u8; 100]),
        (
            "big.bin",
            (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect(),
        ),
        ("back\\slash", b"b".to_vec()),
    ]
}

fn make_tree(root: &Path, reverse: bool) {
    let mut fs_list = files();
    if reverse {
        fs_list.reverse();
    }
    for (rel, data) in &fs_list {
        write(root, rel, data);
    }
    std::os::unix::fs::symlink("a/b", root.join("link")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    write(root, ".git/HEAD", b"ref: refs/heads/main\n");
    write(root, "sub/.git", b"gitdir: elsewhere\n");
}

#[test]
fn digest_is_independent_of_creation_order_and_thread_count() {
    let t = tempfile::tempdir().unwrap();
    let (x, y) = (t.path().join("x"), t.path().join("y"));
    make_tree(&x, false);
    make_tree(&y, true);
    let d1 = in_pool(1, || hash(&x));
    let d4 = in_pool(4, || hash(&x));
    let dy = in_pool(4, || hash(&y));
    assert_eq!(d1, d4);
    assert_eq!(d1, dy);
    assert_eq!(d1.files, files().len() as u64 + 1, "files plus the symlink");
    assert_eq!(
        d1.bytes,
        files().iter().map(|(_, d)| d.len() as u64).sum::<u64>()
    );
    assert!(d1.digest.starts_with("sha256:") && d1.digest.len() == 71);
    assert_eq!(d1.from_cache, 0);
}

#[test]
fn manifest_is_sorted_bytewise_and_has_the_documented_lines() {
    let t = tempfile::tempdir().unwrap();
    make_tree(t.path(), false);
    let m = String::from_utf8(manifest_of(t.path(), &HashOptions::default()).unwrap()).unwrap();
    let paths: Vec<&str> = m
        .lines()
        .map(|l| l.splitn(3, ' ').nth(2).unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(paths, sorted);
    assert!(paths.iter().position(|p| *p == "a-c") < paths.iter().position(|p| *p == "a/b"));
    assert!(!m.contains(".git"), "{m}");
    assert!(m.contains(&format!("{} symlink link\n", sha2_hex(b"a/b"))));
    assert!(m.contains(&format!("{} 5 a/b\n", sha2_hex(b"first"))));
    assert_eq!(
        digest(t.path()),
        format!("sha256:{}", sha2_hex(m.as_bytes()))
    );
}

fn sha2_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn renames_and_edits_change_the_digest_but_mode_and_mtime_do_not() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    make_tree(r, false);
    let base = digest(r);

    fs::set_permissions(r.join("a/b"), fs::Permissions::from_mode(0o755)).unwrap();
    set_mtime(&r.join("a/b"), 1_000_000, 5);
    set_mtime(&r.join("a"), 1_000_000, 5);
    assert_eq!(digest(r), base, "mode and mtime are not part of the digest");

    fs::create_dir(r.join("another-empty-dir")).unwrap();
    assert_eq!(
        digest(r),
        base,
        "empty directories are not part of the digest"
    );

    fs::rename(r.join("a/b"), r.join("a/B")).unwrap();
    let renamed = digest(r);
    assert_ne!(renamed, base);
    fs::rename(r.join("a/B"), r.join("a/b")).unwrap();
    assert_eq!(digest(r), base);

    write(r, "a/b", b"firsT");
    assert_ne!(digest(r), base, "same-size content edit");
    write(r, "a/b", b"first");
    assert_eq!(digest(r), base);

    fs::remove_file(r.join("link")).unwrap();
    std::os::unix::fs::symlink("a-c", r.join("link")).unwrap();
    assert_ne!(digest(r), base, "a new symlink target");
}

#[test]
fn git_and_reproignore_are_skipped() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "keep/a.txt", b"a");
    write(r, ".reproignore", b"# scratch\n*.tmp\n/cache/\n");
    let base = digest(r);
    write(r, "keep/x.tmp", b"ignored");
    write(r, "cache/big", b"ignored");
    write(r, ".git/objects/xx", b"ignored");
    assert_eq!(digest(r), base);
    write(r, "keep/cache/kept", b"not anchored at root, so kept");
    assert_ne!(digest(r), base);
}

/// `.reproignore` has git's semantics, `!` included: a negated pattern re-includes a file.
#[test]
fn reproignore_negation_re_includes_files() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, ".reproignore", b"*.tmp\n!important.tmp\n");
    write(r, "a.txt", b"a");
    write(r, "scratch.tmp", b"ignored");
    write(r, "sub/important.tmp", b"kept");
    let m = String::from_utf8(manifest_of(r, &HashOptions::default()).unwrap()).unwrap();
    assert!(m.contains(" sub/important.tmp\n"), "{m}");
    assert!(!m.contains("scratch.tmp"), "{m}");
    let base = digest(r);
    write(r, "sub/important.tmp", b"changed");
    assert_ne!(digest(r), base, "a re-included file is part of the digest");
}

#[test]
fn follow_symlinks_hashes_targets_under_the_link_path() {
    let t = tempfile::tempdir().unwrap();
    let (linked, copied) = (t.path().join("l"), t.path().join("c"));
    write(&linked, "real/f", b"data");
    std::os::unix::fs::symlink("real", linked.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("real/f", linked.join("file-link")).unwrap();
    write(&copied, "real/f", b"data");
    write(&copied, "dir-link/f", b"data");
    write(&copied, "file-link", b"data");
    let follow = HashOptions {
        follow_symlinks: true,
    };
    let d = hash_path(&linked, &follow, None, None).unwrap();
    assert_eq!(d.digest, digest(&copied));
    assert_ne!(digest(&linked), d.digest, "not followed by default");

    std::os::unix::fs::symlink("..", linked.join("real/up")).unwrap();
    let e = hash_path(&linked, &follow, None, None).unwrap_err();
    assert!(matches!(e, DatasetError::SymlinkLoop { .. }), "{e:?}");
    fs::remove_file(linked.join("real/up")).unwrap();
    std::os::unix::fs::symlink("nowhere", linked.join("dangling")).unwrap();
    let e = hash_path(&linked, &follow, None, None).unwrap_err();
    assert!(e.to_string().contains("dangling"), "{e}");
}

/// The pipeline in docs/datasets.md, run with bash, prints the same digest.
#[test]
fn coreutils_pipeline_in_the_docs_gives_the_same_digest() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/datasets.md")).unwrap();
    let marker = doc
        .find("<!-- test: coreutils-pipeline")
        .expect("marker in docs");
    let block = &doc[marker..];
    let start = block.find("```sh\n").unwrap() + 6;
    let script = &block[start..start + block[start..].find("```").unwrap()];

    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data set");
    make_tree(&dir, false);
    let run = |call: &str, arg: &Path| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\n{script}\n{call} \"$1\""))
            .arg("bash")
            .arg(arg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(run("repro_digest", &dir), digest(&dir));
    let file = dir.join("big.bin");
    assert_eq!(run("repro_file_digest", &file), digest(&file));

    // Symlinks given as the dataset path: a link to a file is named by the link (not by its
    // target), a link to a directory is that directory; the recipe, the re-run script's own
    // function (used when repro is not on PATH) and repro agree.
    let links = t.path().join("links");
    fs::create_dir_all(&links).unwrap();
    let file_link = links.join("train.csv");
    std::os::unix::fs::symlink(&file, &file_link).unwrap();
    let dir_link = links.join("current");
    std::os::unix::fs::symlink(&dir, &dir_link).unwrap();
    let m = String::from_utf8(manifest_of(&file_link, &HashOptions::default()).unwrap()).unwrap();
    assert!(m.ends_with(" train.csv\n"), "named by the link: {m}");
    assert_eq!(run("repro_file_digest", &file_link), digest(&file_link));
    assert_eq!(run("repro_digest", &dir_link), digest(&dir_link));
    assert_eq!(digest(&dir_link), digest(&dir));
    let snippet = repro::script::dataset_verify_snippet();
    let script_digest = |arg: &Path| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -euo pipefail\n{snippet}\ndataset_digest \"$1\""
            ))
            .arg("bash")
            .arg(arg)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for p in [&dir, &file, &file_link, &dir_link] {
        assert_eq!(script_digest(p), digest(p), "{}", p.display());
    }
}

#[test]
fn a_single_file_has_a_one_line_manifest_named_after_it() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "model.pt", b"weights");
    let m = manifest_of(&t.path().join("model.pt"), &HashOptions::default()).unwrap();
    assert_eq!(
        String::from_utf8(m).unwrap(),
        format!("{} 7 model.pt\n", sha2_hex(b"weights"))
    );
}

#[test]
fn special_files_newlines_and_missing_paths_are_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "ok", b"x");
    let fifo = r.join("pipe");
    let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let e = hash_path(r, &HashOptions::default(), None, None).unwrap_err();
    assert!(
        matches!(e, DatasetError::SpecialFile { kind: "fifo", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(&fifo.display().to_string()), "{e}");
    let cli: repro::error::CliError = e.into();
    assert!(cli.to_string().contains("hint: "), "{cli}");
    fs::remove_file(&fifo).unwrap();

    let _sock = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
    let e = hash_path(r, &HashOptions::default(), None, None).unwrap_err();
    assert!(e.to_string().contains("is a socket"), "{e}");
    fs::remove_file(r.join("sock")).unwrap();

    write(r, "bad\nname", b"x");
    let e = hash_path(r, &HashOptions::default(), None, None).unwrap_err();
    assert!(matches!(e, DatasetError::NewlineInPath { .. }), "{e:?}");
    fs::remove_file(r.join("bad\nname")).unwrap();

    let missing = r.join("nope");
    let e = hash_path(&missing, &HashOptions::default(), None, None).unwrap_err();
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
}

#[test]
fn unreadable_files_are_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "ok", b"x");
    let (target, opts) = if unsafe { libc::geteuid() } == 0 {
        // Root reads through chmod 000. A file whose read() fails for root too:
        // /proc/self/mem at offset 0 (unmapped) gives EIO.
        std::os::unix::fs::symlink("/proc/self/mem", r.join("mem")).unwrap();
        (
            r.join("mem"),
            HashOptions {
                follow_symlinks: true,
            },
        )
    } else {
        write(r, "secret", b"x");
        fs::set_permissions(r.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
        (r.join("secret"), HashOptions::default())
    };
    let e = hash_path(r, &opts, None, None).unwrap_err();
    assert!(matches!(e, DatasetError::Unreadable { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("cannot read {}", target.display())),
        "{e}"
    );
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) },
        0
    );
}

fn mtime(p: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn cached(p: &Path, store: &Store) -> DatasetDigest {
    hash_path(p, &HashOptions::default(), Some(store.conn()), None).unwrap()
}

/// Files must be older than the racy-clean window before the cache can serve them.
fn past_racy_window() {
    std::thread::sleep(Duration::from_millis(2100));
}

#[test]
fn the_cache_serves_unchanged_files_and_never_a_stale_hash() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("d");
    make_tree(&r, false);
    let store = Store::open(&t.path().join("repro.db")).unwrap();
    past_racy_window();

    let cold = cached(&r, &store);
    assert_eq!(cold.from_cache, 0);
    let warm = cached(&r, &store);
    assert_eq!(warm.digest, cold.digest);
    assert_eq!(warm.from_cache, files().len() as u64, "every regular file");

    // Same-size edit, then the old mtime put back: size and mtime match the cache row.
    let f = r.join("a/b");
    let (s, ns) = mtime(&f);
    write(&r, "a/b", b"FIRST");
    set_mtime(&f, s, ns);
    assert_eq!(mtime(&f), (s, ns));
    let after = cached(&r, &store);
    assert_eq!(
        after.digest,
        digest(&r),
        "the cache must not serve the old hash"
    );
    assert_ne!(after.digest, cold.digest);
    assert_eq!(after.from_cache, files().len() as u64 - 1);

    // A deleted file's row is dropped; a re-created one is hashed again.
    fs::remove_file(r.join("empty")).unwrap();
    let n: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM hash_cache", [], |row| row.get(0))
        .unwrap();
    cached(&r, &store);
    let m: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM hash_cache", [], |row| row.get(0))
        .unwrap();
    assert_eq!(m, n - 1);
}

/// A row whose key matches but whose hash is wrong: served only when the file's timestamps are
/// well before the hashing time. Proves both that the cache is read and that racy rows are not.
#[test]
fn racily_clean_rows_are_rehashed() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("d");
    write(&r, "f", b"real contents");
    let f = fs::canonicalize(r.join("f")).unwrap();
    let m = fs::metadata(&f).unwrap();
    let ctime_ns = m.ctime() * 1_000_000_000 + m.ctime_nsec();
    let store = Store::open_in_memory().unwrap();
    let put = |hashed_ns: i64| {
        store
            .conn()
            .execute(
                "INSERT OR REPLACE INTO hash_cache VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    f.to_str().unwrap(),
                    m.dev() as i64,
                    m.ino() as i64,
                    m.len() as i64,
                    m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    ctime_ns,
                    vec![0u8; 32],
                    hashed_ns
                ],
            )
            .unwrap();
    };
    let truth = digest(&r);

    put(ctime_ns + 1_000_000); // hashed 1 ms after the last change: racy
    let d = cached(&r, &store);
    assert_eq!((d.digest.as_str(), d.from_cache), (truth.as_str(), 0));

    put(ctime_ns + 10_000_000_000); // hashed 10 s after: trusted (hence the planted hash shows)
    let d = cached(&r, &store);
    assert_eq!(d.from_cache, 1);
    assert_ne!(d.digest, truth);
}

#[test]
fn dvc_files_and_dvc_lock_give_a_dvc_dataset() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path();
    write(
        repo,
        "data/images.dvc",
        b"outs:\n- md5: a304afb96060aad90176268345e10355.dir\n  size: 2048\n  nfiles: 3\n  hash: md5\n  path: images\n",
    );
    write(
        repo,
        "dvc.lock",
        b"schema: '2.0'\nstages:\n  prepare:\n    cmd: python prep.py\n    deps:\n    - path: prep.py\n      hash: md5\n      md5: 0123456789abcdef0123456789abcdef\n      size: 10\n    outs:\n    - path: data/prepared\n      hash: md5\n      md5: 9f1c2e3d4b5a69788796a5b4c3d2e1f0.dir\n      size: 99\n      nfiles: 2\n",
    );
    let sub = repo.join("data");
    // Not pulled: the directory need not exist for a DVC dataset.
    let s = parse_spec("imgs=images", &sub, Some(repo)).unwrap();
    let DatasetSpec::Dvc { hash, source, .. } = &s else {
        panic!("{s:?}")
    };
    assert_eq!(hash, "a304afb96060aad90176268345e10355.dir");
    assert_eq!(source, &repo.join("data/images.dvc"));
    let d = capture(&s, &HashOptions::default(), None, None).unwrap();
    assert_eq!(d.kind, DatasetKind::Dvc);
    assert_eq!(d.name, "imgs");
    assert_eq!(d.uri.as_deref(), Some("data/images"));
    assert_eq!(
        d.version.as_deref(),
        Some("a304afb96060aad90176268345e10355.dir")
    );
    assert_eq!((d.files, d.bytes), (Some(3), Some(2048)));

    let s = parse_spec("./prepared", &sub, Some(repo)).unwrap();
    let d = capture(&s, &HashOptions::default(), None, None).unwrap();
    assert_eq!(d.kind, DatasetKind::Dvc);
    assert_eq!(d.name, "prepared");
    assert_eq!(
        d.version.as_deref(),
        Some("9f1c2e3d4b5a69788796a5b4c3d2e1f0.dir")
    );

    write(repo, "broken.dvc", b"outs:\n- path: broken\n");
    let e = parse_spec("broken", repo, Some(repo)).unwrap_err();
    assert!(e.to_string().contains("broken.dvc"), "{e}");
    assert!(e.to_string().contains("no md5"), "{e}");
}

#[test]
fn a_path_dataset_records_its_digest_and_repo_relative_uri() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path();
    write(repo, "data/val/x", b"1");
    write(repo, "data/val/y", b"22");
    let s = parse_spec("./data/val", &repo.join("data/.."), Some(repo)).unwrap();
    let d = capture(&s, &HashOptions::default(), None, None).unwrap();
    assert_eq!(d.kind, DatasetKind::Path);
    assert_eq!(d.name, "val");
    assert_eq!(d.uri.as_deref(), Some("data/val"));
    let want = digest(&repo.join("data/val"));
    assert_eq!(d.version.as_deref(), Some(want.as_str()));
    assert_eq!(d.digest.as_deref(), Some(want.as_str()));
    assert_eq!((d.files, d.bytes), (Some(2), Some(3)));

    let e = parse_spec("data/nope", repo, Some(repo)).unwrap_err();
    let cli: repro::error::CliError = e.into();
    let text = cli.to_string();
    assert!(
        text.contains("data/nope") && text.contains("hint:"),
        "{text}"
    );
}

#[test]
fn outputs_hash_files_like_sha256sum_and_directories_as_datasets() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "model.pt", b"weights");
    write(r, "ckpt/a", b"1");
    let o = hash_output(&r.join("model.pt")).unwrap();
    let sum = Command::new("sha256sum")
        .arg(r.join("model.pt"))
        .output()
        .unwrap();
    assert_eq!(
        o.sha256.as_deref(),
        Some(&String::from_utf8(sum.stdout).unwrap()[..64])
    );
    assert_eq!(o.bytes, Some(7));
    let o = hash_output(&r.join("ckpt")).unwrap();
    assert_eq!(o.sha256, Some(digest(&r.join("ckpt"))));
    let o = hash_output(&r.join("missing")).unwrap();
    assert_eq!((o.sha256, o.bytes), (None, None));
    assert_eq!(o.path, r.join("missing").to_string_lossy());
}

#[test]
fn cli_dataset_hash_json_cache_and_verify() {
    let env = TestEnv::new();
    let data = env.root().join("data");
    make_tree(&data, false);
    let want = digest(&data);
    let d = data.to_str().unwrap();
    past_racy_window();

    let (code, out, err) = env.run_in(env.root(), &["dataset", "hash", d, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["digest"], want.as_str());
    assert_eq!(v["path"], d);
    assert_eq!(v["from_cache"], 0);
    assert!(
        err.is_empty(),
        "no progress bar when stderr is not a terminal: {err:?}"
    );
    let (_, out, _) = env.run_in(env.root(), &["dataset", "hash", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["from_cache"], files().len() as u64);
    let (_, out, _) = env.run_in(env.root(), &["dataset", "hash", d, "--no-cache"]);
    assert_eq!(out.lines().next(), Some(want.as_str()));
    assert!(out.contains("from cache  0"), "{out}");
    let (_, out, _) = env.run_in(env.root(), &["dataset", "hash", "--manifest", d]);
    assert_eq!(format!("sha256:{}", sha2_hex(out.as_bytes())), want);

    let (code, out, err) = env.run_in(env.root(), &["dataset", "verify", d, &want]);
    assert_eq!((code, out.starts_with("ok: ")), (0, true), "{out}{err}");
    write(&data, "a/b", b"edited");
    let (code, _, err) = env.run_in(env.root(), &["dataset", "verify", d, &want]);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not match") && err.contains(&want),
        "{err}"
    );

    let (code, _, err) = env.run_in(env.root(), &["dataset", "hash", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("nope") && err.contains("hint:"), "{err}");
}

#[test]
fn cli_verify_reports_match_mismatch_and_missing_per_item() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    write(&repo, "data/train/x.csv", b"1,2\n");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--dataset",
            "./data/train",
            "--dataset",
            "imagenet@v3",
            "--output",
            "model.bin",
            "--",
            "sh",
            "-c",
            "echo weights > model.bin",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let run = env.show_json(&id);
    assert_eq!(run["datasets"][0]["kind"], "path");
    assert_eq!(run["datasets"][0]["uri"], "data/train");

    let (code, out, err) = env.run_in(&repo, &["verify", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("match      dataset train"), "{out}");
    assert!(out.contains("unchecked  dataset imagenet"), "{out}");
    assert!(out.contains("match      output  model.bin"), "{out}");

    write(&repo, "data/train/x.csv", b"1,3\n");
    fs::remove_file(repo.join("model.bin")).unwrap();
    let (code, out, _) = env.run_in(&repo, &["verify", &id, "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    let st: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, ["mismatch", "unchecked", "missing"]);
}

/// Files of 64 MiB and more are read on a helper thread; the result must be the plain SHA-256.
#[test]
fn a_big_file_hashes_like_sha256sum() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("big");
    let data: Vec<u8> = (0..(64u32 << 20) + 3)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    fs::write(&f, &data).unwrap();
    let o = hash_output(&f).unwrap();
    assert_eq!(o.sha256.as_deref(), Some(sha2_hex(&data).as_str()));
    let m = manifest_of(t.path(), &HashOptions::default()).unwrap();
    assert_eq!(
        String::from_utf8(m).unwrap(),
        format!("{} {} big\n", sha2_hex(&data), data.len())
    );
}

/// Overwrites the start of `p` in place with `data`, keeping the size (no truncation).
fn overwrite_in_place(p: &Path, data: &[u8]) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all(data).unwrap();
}

/// A same-size in-place edit while a file is read is caught by the mtime/ctime re-check and the
/// file is read again: the digest is the one of the edited file, never of a mix (or the old one).
#[test]
fn an_in_place_edit_during_hashing_is_read_again() {
    for size in [1usize << 20, (64 << 20) + 5] {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        let f = dir.join("weights.bin");
        fs::write(&f, vec![b'a'; size]).unwrap();
        // Old timestamps, so the edit below moves mtime even within one clock tick.
        set_mtime(&f, 1_000_000_000, 0);
        let edited = {
            let mut v = vec![b'a'; size];
            v[..4].copy_from_slice(b"EDIT");
            v
        };
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = attempts.clone();
        let path = f.clone();
        let _hook = repro::capture::dataset::on_read_done(&f, move |attempt| {
            seen.store(attempt, std::sync::atomic::Ordering::SeqCst);
            if attempt == 1 {
                overwrite_in_place(&path, b"EDIT");
            }
        });
        let m = String::from_utf8(manifest_of(&dir, &HashOptions::default()).unwrap()).unwrap();
        assert_eq!(
            m,
            format!("{} {size} weights.bin\n", sha2_hex(&edited)),
            "size {size}"
        );
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Outputs go through the same check.
        let o = hash_output(&f).unwrap();
        assert_eq!(o.sha256.as_deref(), Some(sha2_hex(&edited).as_str()));
    }
}

/// A file that changes on every read is refused by name after a bounded number of attempts,
/// and a file replaced by a rename is noticed too.
#[test]
fn a_file_that_keeps_changing_is_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().canonicalize().unwrap();
    let f = dir.join("log.txt");
    fs::write(&f, b"0000").unwrap();
    set_mtime(&f, 1_000_000_000, 0);
    let path = f.clone();
    let hook = repro::capture::dataset::on_read_done(&f, move |attempt| {
        overwrite_in_place(&path, format!("{attempt:04}").as_bytes());
        set_mtime(&path, 1_000_000_000 + i64::from(attempt), 0);
    });
    let e = hash_path(&dir, &HashOptions::default(), None, None).unwrap_err();
    assert!(
        matches!(e, DatasetError::ChangedWhileHashing { attempts: 3, .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(&f.display().to_string()), "{text}");
    assert!(text.contains("modification time changed"), "{text}");
    drop(hook);

    let path = f.clone();
    let _hook = repro::capture::dataset::on_read_done(&f, move |_| {
        let tmp = path.with_extension("new");
        fs::write(&tmp, b"same").unwrap();
        fs::rename(&tmp, &path).unwrap();
    });
    let e = hash_path(&dir, &HashOptions::default(), None, None).unwrap_err();
    assert!(e.to_string().contains("another file (replaced)"), "{e}");
}

/// A real writer thread rewriting a big file in place (same size) for the whole hash: the
/// result is never a digest; before the re-check it was a digest of neither version.
#[test]
fn a_concurrent_same_size_writer_is_never_recorded() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("big.bin");
    let size = (64usize << 20) + 1;
    fs::write(&f, vec![0u8; size]).unwrap();
    set_mtime(&f, 1_000_000_000, 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let writer = {
        let (f, stop) = (f.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::{Seek, SeekFrom, Write};
            let mut file = fs::OpenOptions::new().write(true).open(&f).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                file.seek(SeekFrom::Start((i * 4099) % (size as u64 - 8)))
                    .unwrap();
                file.write_all(&i.to_le_bytes()).unwrap();
                if i == 0 {
                    started_tx.send(()).unwrap();
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    started_rx.recv().unwrap();
    let r = hash_path(&f, &HashOptions::default(), None, None);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let e = r.expect_err("a file written throughout the hash must not get a digest");
    assert!(
        matches!(e, DatasetError::ChangedWhileHashing { .. }),
        "{e:?}"
    );
}

/// `dataset_ignore` was accepted and never applied; it is gone, and a file that still sets it is
/// refused by name (patterns that shape a digest live in the dataset's `.reproignore`).
#[test]
fn the_removed_dataset_ignore_key_is_refused_by_name() {
    let env = TestEnv::new();
    let cfg = env.home().join(".config/repro/config.toml");
    fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    fs::write(&cfg, "env = [\"SEED\"]\ndataset_ignore = [\"*.tmp\"]\n").unwrap();
    let (code, out, err) = env.run_in(env.root(), &["config", "show"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("dataset_ignore"), "{err}");
    assert!(
        err.contains(&cfg.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("remove or rename `dataset_ignore`"), "{err}");
    fs::write(&cfg, "env = [\"SEED\"]\n").unwrap();
    let (code, out, err) = env.run_in(env.root(), &["config", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("dataset_ignore"), "{out}");
}
