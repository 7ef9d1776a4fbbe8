//! Photo uploads: a `vtNN` report announces a photo of NN chunks, then `vr` messages carry
//! the chunks (index, length, JPEG bytes). Chunks are kept by index, so a repeated chunk is
//! stored once and chunks may arrive in any order; the photo is complete when every index
//! below NN arrived. The total is capped (`max_file_bytes`); memory grows with what arrived,
//! never with what the announcement says. A new announcement replaces an unfinished photo
//! (the device gave up on it).

use std::collections::BTreeMap;

use crate::event::Timestamp;

/// A photo being received.
#[derive(Debug)]
pub struct Upload {
    /// Chunks announced.
    pub chunks: u16,
    /// The file's name (from the announcing report).
    pub name: String,
    /// The announcing report's time.
    pub time: Option<Timestamp>,
    received: BTreeMap<u16, Vec<u8>>,
    bytes: usize,
}

/// What a chunk did.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Stored,
    /// The device repeated a chunk: nothing stored twice.
    Duplicate,
    /// The last missing chunk: the whole photo.
    Complete(Vec<u8>),
}

/// Why a chunk was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("photo chunk {0} beyond the {1} announced")]
    BeyondAnnounced(u16, u16),
    #[error("photo exceeds {0} bytes")]
    TooLarge(usize),
}

impl Upload {
    pub fn new(chunks: u16, name: String, time: Option<Timestamp>) -> Self {
        Upload {
            chunks,
            name,
            time,
            received: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// Stores chunk `index`. The caller drops the upload after `Complete` or `TooLarge`.
    pub fn push(&mut self, index: u16, data: &[u8], max: usize) -> Result<Progress, Refused> {
        if index >= self.chunks {
            return Err(Refused::BeyondAnnounced(index, self.chunks));
        }
        if self.received.contains_key(&index) {
            return Ok(Progress::Duplicate);
        }
        let total = self.bytes.saturating_add(data.len());
        if total > max {
            return Err(Refused::TooLarge(max));
        }
        self.received.insert(index, data.to_vec());
        self.bytes = total;
        if self.received.len() < usize::from(self.chunks) {
            return Ok(Progress::Stored);
        }
        let mut whole = Vec::with_capacity(self.bytes);
        for chunk in std::mem::take(&mut self.received).into_values() {
            whole.extend_from_slice(&chunk);
        }
        self.bytes = 0;
        Ok(Progress::Complete(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_in_any_order_once_each_within_the_cap() {
        let mut u = Upload::new(3, "p.jpg".into(), None);
        assert_eq!(u.push(2, b"cc", 10), Ok(Progress::Stored));
        assert_eq!(u.push(0, b"aa", 10), Ok(Progress::Stored));
        assert_eq!(u.push(0, b"xx", 10), Ok(Progress::Duplicate));
        assert_eq!(u.push(3, b"dd", 10), Err(Refused::BeyondAnnounced(3, 3)));
        assert_eq!(
            u.push(1, b"b", 10),
            Ok(Progress::Complete(b"aabcc".to_vec()))
        );
        let mut u = Upload::new(3, "p.jpg".into(), None);
        assert_eq!(u.push(0, b"aaaa", 5), Ok(Progress::Stored));
        assert_eq!(u.push(1, b"bb", 5), Err(Refused::TooLarge(5)));
    }
}
