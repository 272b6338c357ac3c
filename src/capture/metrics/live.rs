//! The live reader of `REPRO_METRICS`: while the job runs, a thread notes when each run of
//! complete lines first appeared, so a point written without `ts` gets the time repro saw it
//! (the end-of-run ingest stays the source of truth for the values; this only stamps times).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the file is looked at: an open and `fstat` every 100 ms costs nothing measurable, and a
/// point's time is then off by at most that.
pub const POLL: Duration = Duration::from_millis(100);

/// When the lines of a file were first seen: `(end, time)` pairs in file order, each saying
/// that every line ending at or before byte `end` was seen by `time` (seconds since the epoch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stamps {
    ends: Vec<(u64, f64)>,
}

impl Stamps {
    /// Notes that the lines ending at or before `end` were seen by `time` (ignored when `end`
    /// does not move past what was noted already).
    pub fn push(&mut self, end: u64, time: f64) {
        if self.ends.last().is_none_or(|l| end > l.0) {
            self.ends.push((end, time));
        }
    }

    /// The time the line ending at byte `line_end` (just past its newline) was first seen;
    /// `None` for a line seen only after the job ended.
    pub fn time_of(&self, line_end: u64) -> Option<f64> {
        let i = self.ends.partition_point(|(e, _)| *e < line_end);
        self.ends.get(i).map(|(_, t)| *t)
    }

    /// Whether nothing was seen live.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A running live reader; [`LiveReader::stop`] ends it and gives its stamps.
pub struct LiveReader {
    stop: Sender<()>,
    handle: JoinHandle<Stamps>,
}

/// Starts reading `path` every [`POLL`]; `clock` gives the time a line is seen (seconds since
/// the epoch; the run's clock, so times stay on the run's time line).
pub fn start(path: PathBuf, clock: impl Fn() -> f64 + Send + 'static) -> LiveReader {
    let (stop, rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let mut seen = Seen::default();
        // The stop signal ends the wait at once: stopping never costs a poll period.
        while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(POLL) {
            seen.poll(&path, &clock);
        }
        if seen.broken {
            Stamps::default()
        } else {
            seen.stamps
        }
    });
    LiveReader { stop, handle }
}

impl LiveReader {
    /// Stops the thread (without waiting for a poll period) and returns what it saw.
    pub fn stop(self) -> Stamps {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_default()
    }
}

/// What the reader knows of the file.
#[derive(Default)]
struct Seen {
    /// Bytes looked at so far (the end of the last complete line is what counts).
    scanned: u64,
    stamps: Stamps,
    /// The file shrank or was replaced: offsets no longer match, so nothing is stamped.
    broken: bool,
}

impl Seen {
    /// Reads only the new bytes, as an untrusted file (the job may have put a FIFO there), and
    /// stamps the last complete line among them.
    fn poll(&mut self, path: &std::path::Path, clock: &dyn Fn() -> f64) {
        if self.broken {
            return;
        }
        let Ok((mut file, len)) =
            crate::capture::untrusted::open_regular(path, super::MAX_FILE_BYTES, "a metrics file")
        else {
            return;
        };
        if len < self.scanned {
            self.broken = true;
            return;
        }
        if len == self.scanned || file.seek(SeekFrom::Start(self.scanned)).is_err() {
            return;
        }
        let mut buf = vec![0u8; 64 << 10];
        let mut pos = self.scanned;
        let mut last_end = None;
        while pos < len {
            let want = ((len - pos) as usize).min(buf.len());
            let n = match file.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(nl) = buf[..n].iter().rposition(|b| *b == b'\n') {
                last_end = Some(pos + nl as u64 + 1);
            }
            pos += n as u64;
        }
        if let Some(end) = last_end {
            self.stamps.push(end, clock());
            self.scanned = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gets_the_time_of_the_first_poll_that_saw_it_whole() {
        let mut s = Stamps::default();
        s.push(10, 1.0);
        s.push(10, 2.0);
        s.push(25, 3.0);
        assert_eq!(s.time_of(4), Some(1.0));
        assert_eq!(s.time_of(10), Some(1.0));
        assert_eq!(s.time_of(11), Some(3.0));
        assert_eq!(s.time_of(25), Some(3.0));
        assert_eq!(s.time_of(26), None);
    }

    #[test]
    fn the_reader_stamps_complete_lines_only_and_stops_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, b"{\"a\": 1}\n{\"a\": 2").unwrap();
        let mut seen = Seen::default();
        seen.poll(&path, &|| 5.0);
        assert_eq!(seen.stamps.time_of(9), Some(5.0));
        assert_eq!(
            seen.stamps.time_of(16),
            None,
            "a partial line is not stamped"
        );
        std::fs::write(&path, b"{\"a\": 1}\n{\"a\": 2}\n").unwrap();
        seen.poll(&path, &|| 6.0);
        assert_eq!(seen.stamps.time_of(17), Some(6.0));
        std::fs::write(&path, b"{}\n").unwrap();
        seen.poll(&path, &|| 7.0);
        assert!(seen.broken, "a file that shrank is not stamped");

        // A FIFO in its place is never read (it would block the reader).
        let fifo = dir.path().join("fifo.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut on_fifo = Seen::default();
        on_fifo.poll(&fifo, &|| 8.0);
        assert!(on_fifo.stamps.is_empty());

        let reader = start(path, || 1.0);
        let t = std::time::Instant::now();
        let _ = reader.stop();
        assert!(t.elapsed() < POLL, "stopping waited for a poll");
    }
}
