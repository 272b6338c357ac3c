//! Reading a file someone else may have placed: a `--metrics` path or one a repository's
//! `.repro.toml` names, the job's `REPRO_METRICS` file, an attestation key or envelope. Such a
//! path can be a FIFO (reading it blocks forever), a symlink to `/dev/zero` (reading it fills
//! memory) or a huge file. It is opened without blocking (`O_NONBLOCK`, so a FIFO returns at
//! once), checked with `fstat` on the open descriptor (no check-then-open race), refused unless
//! it is a regular file, and read up to a size cap.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an untrusted file was not read. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedFileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {kind}, not a regular file; it was not read (give a regular file: a FIFO would block and a device like /dev/zero never ends)")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than the {limit} bytes repro reads from {what}; it was not read (give a smaller file)")]
    TooLarge {
        path: PathBuf,
        limit: u64,
        what: &'static str,
    },
}

/// The kind of a file that is not a regular one, for the message.
fn kind_of(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` (following symlinks) for reading without blocking and returns it with its size
/// when it is a regular file of at most `limit` bytes.
pub fn open_regular(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<(std::fs::File, u64), UntrustedFileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| UntrustedFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| UntrustedFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(UntrustedFileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(&meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(UntrustedFileError::TooLarge {
            path: path.to_path_buf(),
            limit,
            what,
        });
    }
    Ok((file, meta.len()))
}

/// The whole of `path` when it is a regular file of at most `limit` bytes (`what` names the
/// kind of file in the error: "a metrics file", "a key file"). A file that grows past the
/// limit while it is read is refused too.
pub fn read_regular(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, UntrustedFileError> {
    let (file, len) = open_regular(path, limit, what)?;
    let mut out = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|source| UntrustedFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(UntrustedFileError::TooLarge {
            path: path.to_path_buf(),
            limit,
            what,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_large_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("m.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_regular(&fifo, 100, "a metrics file").unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let zero = dir.path().join("z.jsonl");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_regular(&zero, 100, "a metrics file").unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let big = dir.path().join("big.jsonl");
        std::fs::write(&big, [b'x'; 101]).unwrap();
        let e = read_regular(&big, 100, "a metrics file").unwrap_err();
        assert!(e.to_string().contains("larger than the 100 bytes"), "{e}");
        std::fs::write(&big, [b'x'; 100]).unwrap();
        assert_eq!(
            read_regular(&big, 100, "a metrics file").unwrap().len(),
            100
        );
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert_eq!(read_regular(&link, 100, "x").unwrap().len(), 100);
    }
}
