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

/// An untrusted regular file read piece by piece (a metrics file of a million lines is parsed a
/// window at a time, never held whole): opened and checked as [`open_regular`] does, and refused
/// ([`UntrustedFileError::TooLarge`]) as soon as more than the limit has been read, should it
/// grow while it is read.
pub struct RegularReader {
    file: std::fs::File,
    path: PathBuf,
    limit: u64,
    what: &'static str,
    len: u64,
    read: u64,
}

impl RegularReader {
    /// Opens `path` as [`open_regular`] does.
    pub fn open(path: &Path, limit: u64, what: &'static str) -> Result<Self, UntrustedFileError> {
        let (file, len) = open_regular(path, limit, what)?;
        Ok(RegularReader {
            file,
            path: path.to_path_buf(),
            limit,
            what,
            len,
            read: 0,
        })
    }

    /// The size of the file when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file was empty when it was opened.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends up to `max` more bytes to `buf` (fewer only at the end of the file); 0 at the end.
    pub fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, UntrustedFileError> {
        let n = (&self.file)
            .take(max as u64)
            .read_to_end(buf)
            .map_err(|source| UntrustedFileError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(UntrustedFileError::TooLarge {
                path: self.path.clone(),
                limit: self.limit,
                what: self.what,
            });
        }
        Ok(n)
    }
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

    /// Read piece by piece, a file gives the bytes `read_regular` gives, and is refused for the
    /// same reasons: not a regular file, larger than the limit when opened or once read.
    #[test]
    fn a_regular_file_read_in_pieces_is_bounded_like_a_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("m.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = RegularReader::open(&fifo, 100, "a metrics file")
            .err()
            .unwrap();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let f = dir.path().join("f.jsonl");
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::write(&f, &bytes).unwrap();
        let e = RegularReader::open(&f, 999, "a metrics file")
            .err()
            .unwrap();
        assert!(e.to_string().contains("larger than the 999 bytes"), "{e}");
        let mut r = RegularReader::open(&f, 1000, "a metrics file").unwrap();
        assert_eq!(r.len(), 1000);
        let mut got = Vec::new();
        while r.read_into(&mut got, 64).unwrap() > 0 {}
        assert_eq!(got, bytes);
        assert_eq!(got, read_regular(&f, 1000, "a metrics file").unwrap());
        // Grown past the limit after it was opened: refused once the excess is read.
        let mut r = RegularReader::open(&f, 1000, "a metrics file").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .and_then(|mut w| std::io::Write::write_all(&mut w, b"more"))
            .unwrap();
        let mut got = Vec::new();
        let e = loop {
            match r.read_into(&mut got, 300) {
                Ok(0) => panic!("read past the limit"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("larger than the 1000 bytes"), "{e}");
    }
}
