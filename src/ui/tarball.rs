//! A kept directory output as a tar stream: its files read one after another from the object
//! store while the reply is sent, never all in memory, with the exact size known up front (so
//! the reply has a `Content-Length` and a browser shows progress). GNU format: names longer
//! than 100 bytes travel in a `././@LongLink` entry, as GNU tar and `tar` (the crate) write them.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

/// One file of the archive: its name inside the archive (bytes, `/`-separated), where its
/// bytes are, and how many there are.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub source: PathBuf,
    pub bytes: u64,
}

/// What is read next.
enum Part {
    /// Header blocks (and a long name), in memory.
    Bytes(io::Cursor<Vec<u8>>),
    /// A file's contents: opened when reached, exactly `left` more bytes expected.
    File {
        source: PathBuf,
        open: Option<File>,
        left: u64,
    },
    /// Zero bytes (padding to a block, the two end blocks).
    Zeros(u64),
}

/// The archive as a reader.
pub struct TarStream {
    parts: std::collections::VecDeque<Part>,
    size: u64,
}

const BLOCK: u64 = 512;

fn padding(n: u64) -> u64 {
    (BLOCK - n % BLOCK) % BLOCK
}

impl TarStream {
    /// The archive of `entries` (regular files, mode 0644, modification time `mtime` seconds
    /// since the epoch). Errors on a name that is not a safe relative path.
    pub fn new(entries: Vec<Entry>, mtime: u64) -> io::Result<TarStream> {
        let mut parts = std::collections::VecDeque::new();
        let mut size = 0u64;
        for e in entries {
            // Whoever stored it, a name must not unpack outside the directory.
            if !crate::store::kept::safe_rel(&e.name) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the stored file name {:?} is not a relative path inside the output",
                        String::from_utf8_lossy(&e.name)
                    ),
                ));
            }
            let mut head = Vec::with_capacity(2 * BLOCK as usize);
            let mut header = tar::Header::new_gnu();
            if e.name.len() > 100 {
                // The long name first: an `L` entry whose data is the name and a NUL.
                let mut long = tar::Header::new_gnu();
                long.as_gnu_mut()
                    .expect("a GNU header")
                    .name
                    .get_mut(..13)
                    .expect("the name field")
                    .copy_from_slice(b"././@LongLink");
                long.set_mode(0o644);
                long.set_entry_type(tar::EntryType::GNULongName);
                long.set_size(e.name.len() as u64 + 1);
                long.set_cksum();
                head.extend_from_slice(long.as_bytes());
                head.extend_from_slice(&e.name);
                head.push(0);
                head.resize(head.len() + padding(e.name.len() as u64 + 1) as usize, 0);
                // The header keeps the first 100 bytes, as GNU tar writes it.
                header.as_old_mut().name.copy_from_slice(&e.name[..100]);
            } else {
                header.as_old_mut().name[..e.name.len()].copy_from_slice(&e.name);
            }
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_size(e.bytes);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            head.extend_from_slice(header.as_bytes());
            size += head.len() as u64 + e.bytes + padding(e.bytes);
            parts.push_back(Part::Bytes(io::Cursor::new(head)));
            parts.push_back(Part::File {
                source: e.source,
                open: None,
                left: e.bytes,
            });
            parts.push_back(Part::Zeros(padding(e.bytes)));
        }
        parts.push_back(Part::Zeros(2 * BLOCK));
        size += 2 * BLOCK;
        Ok(TarStream { parts, size })
    }

    /// The exact number of bytes the stream yields.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for TarStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(part) = self.parts.front_mut() {
            if buf.is_empty() {
                return Ok(0);
            }
            let n = match part {
                Part::Bytes(c) => c.read(buf)?,
                Part::Zeros(left) => {
                    let n = (*left).min(buf.len() as u64) as usize;
                    buf[..n].fill(0);
                    *left -= n as u64;
                    n
                }
                Part::File { source, open, left } => {
                    if *left == 0 {
                        0
                    } else {
                        if open.is_none() {
                            *open = Some(File::open(&*source)?);
                        }
                        let want = (*left).min(buf.len() as u64) as usize;
                        let n = open.as_mut().expect("opened").read(&mut buf[..want])?;
                        if n == 0 {
                            // Shorter than recorded: the archive would be corrupt; stop.
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("{} is shorter than recorded", source.display()),
                            ));
                        }
                        *left -= n as u64;
                        n
                    }
                }
            };
            if n > 0 {
                return Ok(n);
            }
            self.parts.pop_front();
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_a_tar_that_tar_reads_back_with_its_exact_size() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("deep/{}/weights.bin", "d".repeat(120));
        let files: Vec<(String, Vec<u8>)> = vec![
            ("ckpt/a.txt".into(), b"alpha\n".to_vec()),
            ("ckpt/empty".into(), Vec::new()),
            (format!("ckpt/{long}"), vec![7u8; 1500]),
            ("ckpt/block".into(), vec![1u8; 512]),
        ];
        let entries: Vec<Entry> = files
            .iter()
            .enumerate()
            .map(|(i, (name, data))| {
                let p = dir.path().join(format!("obj{i}"));
                std::fs::write(&p, data).unwrap();
                Entry {
                    name: name.as_bytes().to_vec(),
                    source: p,
                    bytes: data.len() as u64,
                }
            })
            .collect();
        let mut s = TarStream::new(entries, 1_700_000_000).unwrap();
        let size = s.size();
        let mut all = Vec::new();
        // Small reads cross every part boundary.
        let mut buf = [0u8; 37];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        assert_eq!(all.len() as u64, size);
        assert_eq!(size % 512, 0);
        let mut a = tar::Archive::new(&all[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((name, data));
        }
        assert_eq!(seen, files);
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "",
            "./a",
            "a/\0b",
        ] {
            let e = Entry {
                name: bad.as_bytes().to_vec(),
                source: "/dev/null".into(),
                bytes: 0,
            };
            assert!(TarStream::new(vec![e], 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_file_shorter_than_recorded_fails_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o");
        std::fs::write(&p, b"abc").unwrap();
        let mut s = TarStream::new(
            vec![Entry {
                name: b"x".to_vec(),
                source: p,
                bytes: 10,
            }],
            0,
        )
        .unwrap();
        let mut out = Vec::new();
        assert!(s.read_to_end(&mut out).is_err());
    }
}
