//! Reassembly of files a device uploads in blocks: photos (`#I#`) and tachograph ddd-files
//! (`#IT#` then `#T#`).
//!
//! Blocks must arrive in order from index 0; a block the device repeats (it lost our answer)
//! is acknowledged again without being appended twice. The total is capped by
//! `Limits::wialon_max_file_bytes`; memory grows with what actually arrived, never with what a
//! header announces.

/// A file being received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// What identifies the file across its blocks (photo name, or driver id for ddd-files).
    pub key: Vec<u8>,
    /// Index of the last block.
    pub last: u32,
    /// Index of the next block expected.
    pub next: u32,
    pub data: Vec<u8>,
    /// Seconds since the epoch from the header (`None`: the device sent NA).
    pub time: Option<i64>,
}

/// What a block did to the upload.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Stored; more blocks to come.
    Stored,
    /// Already had it (a resend): acknowledge again, nothing appended.
    Duplicate,
    /// The last block: the whole file.
    Complete(Upload),
}

/// Why a block was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("block {got} out of order (expected {expected})")]
    OutOfOrder { got: u32, expected: u32 },
    #[error("block {0} does not belong to the file in progress")]
    Mismatch(u32),
    #[error("file exceeds {0} bytes")]
    TooLarge(usize),
}

/// Feeds one block. `slot` holds the upload in progress; it is emptied when the file completes
/// or a block is refused for size (the device must start over).
pub fn push(
    slot: &mut Option<Upload>,
    key: &[u8],
    index: u32,
    last: u32,
    time: Option<i64>,
    block: &[u8],
    max: usize,
) -> Result<Progress, Refused> {
    if index == 0 {
        // A new file (or the device restarting this one): forget any half-received upload.
        *slot = Some(Upload {
            key: key.to_vec(),
            last,
            next: 0,
            data: Vec::new(),
            time,
        });
    }
    let Some(up) = slot.as_mut() else {
        return Err(Refused::OutOfOrder {
            got: index,
            expected: 0,
        });
    };
    if up.key != key || up.last != last {
        return Err(Refused::Mismatch(index));
    }
    if index < up.next {
        return Ok(Progress::Duplicate);
    }
    if index > up.next {
        return Err(Refused::OutOfOrder {
            got: index,
            expected: up.next,
        });
    }
    if up.data.len().saturating_add(block.len()) > max {
        *slot = None;
        return Err(Refused::TooLarge(max));
    }
    up.data.extend_from_slice(block);
    up.next = index.saturating_add(1);
    if index >= up.last {
        return Ok(slot.take().map_or(Progress::Stored, Progress::Complete));
    }
    Ok(Progress::Stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicate_out_of_order_and_cap() {
        let mut s = None;
        assert_eq!(
            push(&mut s, b"a", 0, 2, None, b"12", 10),
            Ok(Progress::Stored)
        );
        assert_eq!(
            push(&mut s, b"a", 0, 2, None, b"12", 10),
            Ok(Progress::Stored)
        );
        assert_eq!(
            push(&mut s, b"a", 1, 2, None, b"34", 10),
            Ok(Progress::Stored)
        );
        assert_eq!(
            push(&mut s, b"a", 1, 2, None, b"34", 10),
            Ok(Progress::Duplicate)
        );
        assert_eq!(
            push(&mut s, b"b", 2, 2, None, b"56", 10),
            Err(Refused::Mismatch(2))
        );
        match push(&mut s, b"a", 2, 2, None, b"56", 10) {
            Ok(Progress::Complete(u)) => assert_eq!(u.data, b"123456"),
            other => panic!("{other:?}"),
        }
        assert!(s.is_none());
        assert_eq!(
            push(&mut s, b"a", 1, 2, None, b"", 10),
            Err(Refused::OutOfOrder {
                got: 1,
                expected: 0
            })
        );
        assert_eq!(
            push(&mut s, b"a", 0, 1, None, b"123456", 10),
            Ok(Progress::Stored)
        );
        assert_eq!(
            push(&mut s, b"a", 1, 1, None, b"12345", 10),
            Err(Refused::TooLarge(10))
        );
        assert!(s.is_none());
    }
}
