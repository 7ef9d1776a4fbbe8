//! Files the gateway re-reads when they change (the IMEI allow-list, device profiles, the TLS
//! certificate), polled by their stamps.
//!
//! Files are often rewritten in place: truncated, then written. A poll can catch one empty or
//! half-written, and a truncated allow-list still parses as a list: read then, it would
//! disconnect every device missing from it, and let them back in at the next poll. So
//! [`FileWatch`] reads a change only once the files' stamps are the same at two polls in a row,
//! and throws away a read during which they moved: a reload comes one poll interval after the
//! last write. Replacing a file by a rename (`mv`, or Kubernetes updating a mounted secret or
//! config map) is safe at any moment.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// What tells a watched file changed: modification time and size (a rewrite within the same
/// mtime second usually changes the size; a Kubernetes secret update swaps a symlink, which
/// changes both).
pub type FileStamp = Option<(SystemTime, u64)>;

/// The stamp of `path` now (`None` if it cannot be read).
pub fn file_stamp(path: &Path) -> FileStamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// When to re-read a set of files (see the module).
#[derive(Debug)]
pub struct FileWatch {
    paths: Vec<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The stamps of the last read: the one in force, or one that failed (reported once).
    read: Vec<FileStamp>,
    /// Stamps seen at the previous poll that differ from `read`: a change settling.
    settling: Option<Vec<FileStamp>>,
}

impl FileWatch {
    /// Watches `paths` as they are now: make it before the first read, so that a change during
    /// that read is seen.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let read = paths.iter().map(|p| file_stamp(p)).collect();
        FileWatch {
            paths,
            state: Mutex::new(State {
                read,
                settling: None,
            }),
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn stamps(&self) -> Vec<FileStamp> {
        self.paths.iter().map(|p| file_stamp(p)).collect()
    }

    /// Calls `read` when the files changed since the last read and have settled since the
    /// previous poll. `Ok(None)`: nothing to take (unchanged, still settling, or changed while
    /// read). A read that fails is reported once: it is made again when the files change.
    pub fn poll<T, E>(&self, read: impl FnOnce() -> Result<T, E>) -> Result<Option<T>, E> {
        let now = self.stamps();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now == st.read {
            st.settling = None;
            return Ok(None);
        }
        if st.settling.as_ref() != Some(&now) {
            st.settling = Some(now);
            return Ok(None);
        }
        let got = read();
        if self.stamps() != now {
            // Written while read: what was read may be half of it.
            st.settling = None;
            return Ok(None);
        }
        st.read = now;
        st.settling = None;
        got.map(Some)
    }
}

/// Tests: writes `text` to `path` with an mtime of its own per `version`, so that each rewrite
/// gets a new stamp even within one mtime tick.
#[cfg(test)]
pub(crate) fn write_versioned(path: &Path, text: &str, version: u64) {
    std::fs::write(path, text).unwrap();
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + version);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("avlgate-watch-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("f.txt")
    }

    fn read(path: &Path) -> Result<String, std::io::Error> {
        std::fs::read_to_string(path)
    }

    #[test]
    fn a_change_is_read_once_it_has_settled() {
        let path = file("settle");
        write_versioned(&path, "one\n", 1);
        let w = FileWatch::new(vec![path.clone()]);
        assert_eq!(w.poll(|| read(&path)).unwrap(), None, "unchanged");

        // Caught truncated (a writer in the middle of rewriting it in place): not read.
        write_versioned(&path, "", 2);
        assert_eq!(
            w.poll(|| -> Result<String, std::io::Error> { panic!("read while settling") })
                .unwrap(),
            None
        );
        write_versioned(&path, "two\n", 3);
        assert_eq!(
            w.poll(|| read(&path)).unwrap(),
            None,
            "changed again: settling anew"
        );
        assert_eq!(w.poll(|| read(&path)).unwrap().as_deref(), Some("two\n"));
        assert_eq!(w.poll(|| read(&path)).unwrap(), None, "read already");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn a_read_during_a_write_is_thrown_away_and_made_again() {
        let path = file("during");
        write_versioned(&path, "one\n", 1);
        let w = FileWatch::new(vec![path.clone()]);
        write_versioned(&path, "two\n", 2);
        assert_eq!(w.poll(|| read(&path)).unwrap(), None);
        let torn = w.poll(|| {
            let got = read(&path);
            write_versioned(&path, "three\n", 3);
            got
        });
        assert_eq!(torn.unwrap(), None, "the file moved while read");
        assert_eq!(w.poll(|| read(&path)).unwrap(), None, "settling");
        assert_eq!(w.poll(|| read(&path)).unwrap().as_deref(), Some("three\n"));
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn a_failed_read_is_reported_once_and_every_file_counts() {
        let one = file("fail");
        let two = one.with_file_name("g.txt");
        write_versioned(&one, "a\n", 1);
        write_versioned(&two, "b\n", 1);
        let w = FileWatch::new(vec![one.clone(), two.clone()]);
        write_versioned(&two, "c\n", 2);
        assert_eq!(w.poll(|| Err::<(), _>("bad")), Ok(None));
        assert_eq!(w.poll(|| Err::<(), _>("bad")), Err("bad"));
        assert_eq!(w.poll(|| Err::<(), _>("bad")), Ok(None), "once");
        write_versioned(&one, "d\n", 3);
        assert_eq!(w.poll(|| Ok::<_, &str>(1)), Ok(None));
        assert_eq!(w.poll(|| Ok::<_, &str>(1)), Ok(Some(1)));
        std::fs::remove_dir_all(one.parent().unwrap()).ok();
    }
}
