//! The filesystem under the database: detected with `statfs(2)` and classified as local or
//! network (NFS, Lustre, GPFS, CIFS/SMB, BeeGFS, CephFS, 9p, sshfs and other FUSE filesystems),
//! and the journal policy that follows.
//!
//! Why: SQLite's WAL keeps its index in a shared-memory file (`-shm`) mapped by every connection;
//! processes on different hosts of a network filesystem do not share that memory, so WAL there
//! corrupts or loses writes without any error. The rollback journal only needs POSIX advisory
//! locks, which network filesystems provide with varying fidelity. So on a network filesystem the
//! store refuses to open unless the user opts in (`REPRO_ALLOW_NETWORK_FS=1`), and then uses the
//! rollback journal. See docs/cluster.md.

use std::path::{Path, PathBuf};

use crate::error::Hinted;

/// The environment variable that allows a database on a network filesystem (rollback journal).
pub const ALLOW_ENV: &str = "REPRO_ALLOW_NETWORK_FS";

/// A filesystem as `statfs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// `f_type`, the filesystem's magic number (32 bits).
    pub magic: u32,
    /// A name for messages: "nfs", "lustre", "fuse.sshfs", "ext4", or the magic in hex.
    pub name: String,
    /// Whether other hosts may open the same files (WAL is unsafe there).
    pub network: bool,
}

// Magic numbers from linux/magic.h and the filesystems' own sources.
const NFS: u32 = 0x6969;
const SMB: u32 = 0x517B;
const CIFS: u32 = 0xFF53_4D42;
const SMB2: u32 = 0xFE53_4D42;
const LUSTRE: u32 = 0x0BD0_0BD0;
const GPFS: u32 = 0x4750_4653;
const CEPH: u32 = 0x00C3_6400;
const BEEGFS: u32 = 0x1983_0326;
const V9FS: u32 = 0x0102_1997;
const AFS: u32 = 0x5346_414F;
const AFS_FS: u32 = 0x6B41_4653;
const CODA: u32 = 0x7375_7245;
const NCP: u32 = 0x564C;
const OCFS2: u32 = 0x7461_636F;
const GFS2: u32 = 0x0116_1970;
const ORANGEFS: u32 = 0x2003_0528;
const PANFS: u32 = 0xAAD7_AAEA;
const FUSE: u32 = 0x6573_5546;

const NETWORK: &[(u32, &str)] = &[
    (NFS, "nfs"),
    (SMB, "smb"),
    (CIFS, "cifs"),
    (SMB2, "smb2"),
    (LUSTRE, "lustre"),
    (GPFS, "gpfs"),
    (CEPH, "ceph"),
    (BEEGFS, "beegfs"),
    (V9FS, "9p"),
    (AFS, "afs"),
    (AFS_FS, "afs"),
    (CODA, "coda"),
    (NCP, "ncp"),
    (OCFS2, "ocfs2"),
    (GFS2, "gfs2"),
    (ORANGEFS, "orangefs"),
    (PANFS, "panfs"),
];

const LOCAL: &[(u32, &str)] = &[
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x794C_7630, "overlayfs"),
    (0x2FC1_2FC1, "zfs"),
    (0xF2F5_2010, "f2fs"),
    (0x4D44, "vfat"),
    (0x5346_544E, "ntfs"),
    (0x7366_746E, "ntfs3"),
    (0x6264_6576, "bdev"),
    (0x8584_58F6, "ramfs"),
    (0x3153_464A, "jfs"),
    (0x5265_4973, "reiserfs"),
    (0x7375_6673, "squashfs"),
];

/// FUSE filesystems known to keep data on this host; any other FUSE filesystem (sshfs, s3fs,
/// gcsfuse, glusterfs, juicefs, rclone…, or one whose type cannot be read) counts as network.
const LOCAL_FUSE: &[&str] = &[
    "fuse-overlayfs",
    "fuse.fuse-overlayfs",
    "fuse.squashfuse",
    "fuse.squashfuse_ll",
    "fuse.bindfs",
    "fuse.lxcfs",
    "fuse.portal",
    "fuse.gvfsd-fuse",
    "fuse.encfs",
    "fuse.gocryptfs",
    "fuse.ntfs-3g",
    "fuseblk",
];

/// Classifies a filesystem by its `statfs` magic number; for FUSE, `fuse_type` is the mount's
/// type from /proc/self/mountinfo (e.g. "fuse.sshfs") when known.
pub fn classify(magic: u32, fuse_type: Option<&str>) -> FsInfo {
    if magic == FUSE {
        let name = fuse_type.unwrap_or("fuse").to_string();
        let network = !LOCAL_FUSE.contains(&name.as_str());
        return FsInfo {
            magic,
            name,
            network,
        };
    }
    if let Some((_, name)) = NETWORK.iter().find(|(m, _)| *m == magic) {
        return FsInfo {
            magic,
            name: (*name).to_string(),
            network: true,
        };
    }
    let name = LOCAL
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("0x{magic:x}"));
    FsInfo {
        magic,
        name,
        network: false,
    }
}

/// The filesystem type of the mount that holds `path`, from /proc/self/mountinfo text: the
/// longest mount point that is a prefix of `path`. Mount points are octal-escaped (`\040`).
pub fn mount_type(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(mp), Some(fstype)) = (left.split(' ').nth(4), right.split(' ').next()) else {
            continue;
        };
        let mount_point = unescape(mp);
        let fstype = fstype.to_string();
        let mp = Path::new(&mount_point);
        if path.starts_with(mp) {
            let len = mp.as_os_str().len();
            // Equal length: a later mount over the same point hides the earlier one.
            if best.as_ref().is_none_or(|(l, _)| len >= *l) {
                best = Some((len, fstype));
            }
        }
    }
    best.map(|(_, t)| t)
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `statfs` of `path` or, when it does not exist yet (a database about to be created), of its
/// nearest existing ancestor. Returns the path actually examined with the classification.
pub fn probe(path: &Path) -> std::io::Result<(PathBuf, FsInfo)> {
    let mut candidate = Some(path);
    let mut last_err = None;
    while let Some(p) = candidate {
        match statfs_magic(p) {
            Ok(magic) => {
                let fuse_type = if magic == FUSE {
                    let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                    std::fs::read_to_string("/proc/self/mountinfo")
                        .ok()
                        .and_then(|m| mount_type(&m, &abs))
                } else {
                    None
                };
                return Ok((p.to_path_buf(), classify(magic, fuse_type.as_deref())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                last_err = Some(e);
                candidate = p.parent().filter(|q| !q.as_os_str().is_empty());
            }
            Err(e) => return Err(e),
        }
    }
    // A relative path whose every component is missing: examine the working directory.
    match last_err {
        Some(_) if path.is_relative() => probe(Path::new(".")),
        Some(e) => Err(e),
        None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    }
}

fn statfs_magic(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated path; buf is a plain C struct statfs fills in.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // f_type is signed on some architectures; every magic number fits in 32 bits.
    Ok((buf.f_type as u64 & 0xFFFF_FFFF) as u32)
}

/// How the store journals writes on a given filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// `journal_mode=WAL`, `synchronous=NORMAL`: local disks.
    Wal,
    /// `journal_mode=DELETE`, `synchronous=FULL`: a network filesystem the user allowed; writers
    /// on several hosts rely on the filesystem's POSIX locks.
    Rollback,
}

/// The database is on a network filesystem and the user did not allow it.
#[derive(Debug, thiserror::Error)]
#[error("the database {path} is on a network filesystem ({fs}), where SQLite's write-ahead log is unsafe: processes on other hosts would not see each other's writes and the database could be corrupted silently")]
pub struct NetworkFsError {
    pub path: PathBuf,
    pub fs: String,
}

impl Hinted for NetworkFsError {
    fn hint(&self) -> Option<String> {
        Some(format!(
            "keep the database on a local disk of each node (`--db /local/disk/repro.db` or REPRO_DB) and collect runs with `repro export` / `repro import`; or set {ALLOW_ENV}=1 to use it here with a rollback journal, if the filesystem's locks work across hosts (see docs/cluster.md)"
        ))
    }
}

/// Whether the value of `REPRO_ALLOW_NETWORK_FS` allows a network filesystem.
pub fn allowed(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

/// The journal for a database at `path` on filesystem `fs`: WAL on a local one; on a network
/// one a rollback journal when `allow_network`, else the error that explains the fix.
pub fn journal(path: &Path, fs: &FsInfo, allow_network: bool) -> Result<Journal, NetworkFsError> {
    match (fs.network, allow_network) {
        (false, _) => Ok(Journal::Wal),
        (true, true) => Ok(Journal::Rollback),
        (true, false) => Err(NetworkFsError {
            path: path.to_path_buf(),
            fs: fs.name.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_filesystems_are_classified_by_magic() {
        for (magic, name) in [
            (0x6969, "nfs"),
            (0x0BD0_0BD0, "lustre"),
            (0x4750_4653, "gpfs"),
            (0xFF53_4D42, "cifs"),
            (0xFE53_4D42, "smb2"),
            (0x517B, "smb"),
            (0x1983_0326, "beegfs"),
            (0x00C3_6400, "ceph"),
            (0x0102_1997, "9p"),
        ] {
            let fs = classify(magic, None);
            assert!(fs.network, "{name}");
            assert_eq!(fs.name, name);
        }
    }

    #[test]
    fn local_filesystems_and_unknown_magics_are_local() {
        for (magic, name) in [
            (0xEF53, "ext4"),
            (0x5846_5342, "xfs"),
            (0x9123_683E, "btrfs"),
            (0x0102_1994, "tmpfs"),
            (0x794C_7630, "overlayfs"),
        ] {
            let fs = classify(magic, None);
            assert!(!fs.network, "{name}");
            assert_eq!(fs.name, name);
        }
        let fs = classify(0x1234_5678, None);
        assert!(!fs.network);
        assert_eq!(fs.name, "0x12345678");
    }

    #[test]
    fn fuse_is_network_unless_known_local() {
        assert!(classify(FUSE, Some("fuse.sshfs")).network);
        assert!(classify(FUSE, Some("fuse.s3fs")).network);
        assert!(classify(FUSE, None).network, "unknown FUSE: assume shared");
        let fs = classify(FUSE, Some("fuse.fuse-overlayfs"));
        assert!(!fs.network);
        assert_eq!(fs.name, "fuse.fuse-overlayfs");
    }

    #[test]
    fn mountinfo_picks_the_longest_prefix() {
        let info = "22 1 0:21 / / rw,relatime - overlay overlay rw\n\
                    30 22 0:40 / /home rw,relatime shared:5 - nfs4 server:/home rw,vers=4.2\n\
                    31 30 0:41 / /home/u/mnt rw - fuse.sshfs u@h:/ rw\n\
                    32 22 0:42 / /my\\040data rw - ext4 /dev/sda1 rw\n";
        assert_eq!(
            mount_type(info, Path::new("/home/u/x.db")).as_deref(),
            Some("nfs4")
        );
        assert_eq!(
            mount_type(info, Path::new("/home/u/mnt/x.db")).as_deref(),
            Some("fuse.sshfs")
        );
        assert_eq!(
            mount_type(info, Path::new("/homework")).as_deref(),
            Some("overlay")
        );
        assert_eq!(
            mount_type(info, Path::new("/my data/x")).as_deref(),
            Some("ext4")
        );
    }

    #[test]
    fn policy_refuses_network_unless_allowed() {
        let nfs = classify(0x6969, None);
        let ext4 = classify(0xEF53, None);
        let p = Path::new("/home/u/.local/share/repro/repro.db");
        assert_eq!(journal(p, &ext4, false).unwrap(), Journal::Wal);
        assert_eq!(journal(p, &ext4, true).unwrap(), Journal::Wal);
        assert_eq!(journal(p, &nfs, true).unwrap(), Journal::Rollback);
        let err = journal(p, &nfs, false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/home/u/.local/share/repro/repro.db"), "{msg}");
        assert!(msg.contains("nfs"), "{msg}");
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("--db") && hint.contains("repro export"),
            "{hint}"
        );
        assert!(hint.contains(ALLOW_ENV), "{hint}");
    }

    #[test]
    fn allow_values() {
        for v in ["1", "true", "YES", " on "] {
            assert!(allowed(Some(v)), "{v}");
        }
        for v in ["0", "", "no", "false"] {
            assert!(!allowed(Some(v)), "{v}");
        }
        assert!(!allowed(None));
    }

    #[test]
    fn probe_reads_a_real_filesystem_and_walks_up_to_an_existing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b/repro.db");
        let (examined, fs) = probe(&missing).unwrap();
        assert_eq!(examined, dir.path());
        let (_, direct) = probe(dir.path()).unwrap();
        assert_eq!(fs, direct);
        // /proc is procfs on every Linux: local, magic 0x9fa0.
        let (_, procfs) = probe(Path::new("/proc/self")).unwrap();
        assert_eq!(procfs.magic, 0x9fa0);
        assert!(!procfs.network);
    }
}
