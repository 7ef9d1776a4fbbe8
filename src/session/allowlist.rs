//! The optional IMEI allow-list: a text file, one IMEI per line, `#` starts a comment. When it
//! is configured, a device whose IMEI is not listed gets its protocol's login refusal and is
//! disconnected (UDP: its datagrams are neither published nor acknowledged). The file is
//! re-read when it changes; a file that cannot be read or parsed on reload leaves the previous
//! list in force (a half-written file must not lock every device out).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::net::{file_stamp, FileStamp};

/// Larger files are refused: a list of a few million IMEIs is ~50 MB; anything beyond is a
/// mistake (a wrong path), and reading it would only waste memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    #[error("reading the IMEI allow-list {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the IMEI allow-list {0} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
    #[error("{0}:{1}: not a device id (letters, digits, `-`, `_`, up to 32): {2:?}")]
    Syntax(PathBuf, usize, String),
}

/// The allow-list and the file it came from.
#[derive(Debug)]
pub struct AllowList {
    path: PathBuf,
    imeis: RwLock<Arc<HashSet<String>>>,
    stamp: Mutex<FileStamp>,
}

/// Parses the file format.
pub fn parse(path: &Path, text: &str) -> Result<HashSet<String>, AllowListError> {
    let mut set = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        // IMEIs are digits; Wialon devices may use another serial number as their id.
        let id_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if entry.len() > 32 || !entry.bytes().all(id_byte) {
            return Err(AllowListError::Syntax(
                path.into(),
                i + 1,
                entry.chars().take(40).collect(),
            ));
        }
        set.insert(entry.to_string());
    }
    Ok(set)
}

fn read(path: &Path) -> Result<HashSet<String>, AllowListError> {
    let meta = std::fs::metadata(path).map_err(|e| AllowListError::Read(path.into(), e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(AllowListError::TooLarge(path.into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| AllowListError::Read(path.into(), e))?;
    parse(path, &text)
}

impl AllowList {
    /// Reads the file; an error here stops the gateway from starting.
    pub fn load(path: &Path) -> Result<Self, AllowListError> {
        let stamp = file_stamp(path);
        let imeis = read(path)?;
        Ok(AllowList {
            path: path.into(),
            imeis: RwLock::new(Arc::new(imeis)),
            stamp: Mutex::new(stamp),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `imei` may log in.
    pub fn allows(&self, imei: &str) -> bool {
        self.imeis
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(imei)
    }

    /// IMEIs on the list now.
    pub fn len(&self) -> usize {
        self.imeis.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file if it changed. `Ok(true)`: the new list is in force.
    pub fn reload_if_changed(&self) -> Result<bool, AllowListError> {
        let now = file_stamp(&self.path);
        let mut stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if *stamp == now {
            return Ok(false);
        }
        let imeis = read(&self.path)?;
        *self.imeis.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(imeis);
        *stamp = now;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_and_spaces_are_ignored() {
        let s = parse(
            Path::new("x"),
            "# fleet A\n356307042441013\n  862123456789012  # truck 7\n\n#\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.contains("356307042441013") && s.contains("862123456789012"));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let e = parse(Path::new("list"), "1\n2\nab c\n").unwrap_err();
        assert!(e.to_string().starts_with("list:3:"), "{e}");
        assert!(parse(Path::new("l"), &"9".repeat(33)).is_err());
    }

    #[test]
    fn reload_picks_up_changes_and_keeps_the_old_list_on_error() {
        let dir = std::env::temp_dir().join(format!("avlgate-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("imeis.txt");
        std::fs::write(&path, "111\n").unwrap();
        let l = AllowList::load(&path).unwrap();
        assert!(l.allows("111") && !l.allows("222"));
        assert!(!l.reload_if_changed().unwrap());
        std::fs::write(&path, "111\n222\n").unwrap();
        assert!(l.reload_if_changed().unwrap());
        assert!(l.allows("222"));
        std::fs::write(&path, "111\n222\nnot an imei\n").unwrap();
        assert!(l.reload_if_changed().is_err());
        assert!(l.allows("222"), "the previous list stays in force");
        assert_eq!(l.len(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }
}
