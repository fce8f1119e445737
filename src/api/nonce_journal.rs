//! The nonce journal: every nonce the cache accepts is appended to a file before its request
//! runs, so that after `kill -9` the restarted server still refuses the last window's
//! replays. Appends are plain `write` calls, not fsynced: they survive the process dying (the
//! kernel has them), not a power cut, which costs a few microseconds per request instead of
//! a disk flush (docs/security.md).
//!
//! Two files bound its size: `<snapshot>.journal` takes appends; when it is
//! [`ROTATE_SECS`] old and every entry of `<snapshot>.journal.old` has expired, it becomes
//! `.old` (replacing that) and a new one starts. So the files hold at most the nonces of the
//! last ~10 minutes plus the longest expiry (2 × the timestamp window).
//!
//! Not here: the cache itself and the line format (`api::nonce`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// How long the current journal file takes appends before it may be rotated.
pub const ROTATE_SECS: i64 = 600;

pub(super) struct NonceJournal {
    current: PathBuf,
    old: PathBuf,
    file: File,
    /// When the current file was started (unix seconds).
    started: i64,
    /// Latest expiry written to the current file, and to the old one.
    current_max_expiry: i64,
    old_max_expiry: i64,
    /// An append failed and was logged; later failures are not (fail open: the in-memory
    /// cache still refuses replays, only the crash window reopens).
    failing: bool,
}

/// The journal files for a snapshot path, the old one first (the order to replay them).
pub(super) fn journal_paths(snapshot: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = snapshot.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with(".journal.old"), with(".journal")]
}

impl NonceJournal {
    /// Starts an empty journal, removing any files of an earlier run: call it only once
    /// their entries are in the snapshot (or the cache, which then writes one).
    pub(super) fn start(snapshot: &Path, now: i64) -> io::Result<Self> {
        let [old, current] = journal_paths(snapshot);
        remove_if_present(&old)?;
        let file = open_truncated(&current)?;
        Ok(NonceJournal {
            current,
            old,
            file,
            started: now,
            current_max_expiry: i64::MIN,
            old_max_expiry: i64::MIN,
            failing: false,
        })
    }

    /// Appends one entry line (ending in a newline) with its expiry, rotating first if due.
    pub(super) fn append(&mut self, line: &str, expires_at: i64, now: i64) {
        let result = self
            .rotate_if_due(now)
            .and_then(|()| self.file.write_all(line.as_bytes()));
        match result {
            Ok(()) => {
                self.current_max_expiry = self.current_max_expiry.max(expires_at);
                self.failing = false;
            }
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(error = %e, file = %self.current.display(),
                    "cannot append to the nonce journal: replays of requests signed now would pass after a crash");
            }
            Err(_) => {}
        }
    }

    /// Empties the journal (the snapshot now holds every live entry).
    pub(super) fn clear(&mut self, now: i64) -> io::Result<()> {
        remove_if_present(&self.old)?;
        self.file = open_truncated(&self.current)?;
        self.started = now;
        self.current_max_expiry = i64::MIN;
        self.old_max_expiry = i64::MIN;
        Ok(())
    }

    fn rotate_if_due(&mut self, now: i64) -> io::Result<()> {
        if now - self.started < ROTATE_SECS || self.old_max_expiry >= now {
            return Ok(());
        }
        std::fs::rename(&self.current, &self.old)?;
        self.file = open_truncated(&self.current)?;
        self.old_max_expiry = self.current_max_expiry;
        self.current_max_expiry = i64::MIN;
        self.started = now;
        Ok(())
    }
}

fn open_truncated(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    OpenOptions::new().append(true).open(path)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotates_only_when_old_and_the_previous_file_has_expired() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("nonces");
        let [old, current] = journal_paths(&snap);
        std::fs::write(&old, "stale\n").unwrap();
        let mut j = NonceJournal::start(&snap, 0).unwrap();
        assert!(!old.exists());
        j.append("a\n", 2_000, 10);
        j.append("b\n", 1_500, ROTATE_SECS - 1);
        assert_eq!(read(&current), "a\nb\n");
        // Due: the current file becomes the old one.
        j.append("c\n", 3_000, ROTATE_SECS);
        assert_eq!(
            (read(&old).as_str(), read(&current).as_str()),
            ("a\nb\n", "c\n")
        );
        // Due again by age, but the old file still holds a live entry (expiry 2,000).
        j.append("d\n", 3_000, 2 * ROTATE_SECS);
        assert_eq!(read(&current), "c\nd\n");
        j.append("e\n", 4_000, 2_001);
        assert_eq!(
            (read(&old).as_str(), read(&current).as_str()),
            ("c\nd\n", "e\n")
        );
        j.clear(2_002).unwrap();
        assert!(!old.exists());
        assert_eq!(read(&current), "");
    }
}
