//! Sub-packaged messages (分包): a message longer than one frame's 1023-byte body comes as
//! packages 1..=total with consecutive serials, each with the package fields in its header.
//! They are held here until every package is in, then joined in order into one body.
//!
//! Bounds, so a device that never finishes cannot hold memory:
//!
//! - the bytes held across all messages in progress stay within `max_message_bytes`; a package
//!   that would pass it drops its whole message (and is refused);
//! - at most [`MAX_PARTIALS`] messages are in progress; a new one drops the least recently
//!   active;
//! - a message with no package for `timeout` is dropped (checked whenever the session decodes,
//!   with the clock the session layer passes in);
//! - storage is per package received (never sized from the header's `total`).
//!
//! A message is identified by its id, its total, the terminal number and its first serial
//! (the package's serial minus its index, less one): a resent package replaces the one held,
//! and a package of an earlier, dropped transmission starts a new message.

use std::time::{Duration, SystemTime};

use super::frame::{Header, Package, Terminal};

/// Messages in progress at once per session.
pub const MAX_PARTIALS: usize = 4;

#[derive(Debug)]
struct Partial {
    id: u16,
    total: u16,
    first_serial: u16,
    terminal: Terminal,
    updated: SystemTime,
    /// (index, body) as received.
    parts: Vec<(u16, Vec<u8>)>,
    bytes: usize,
}

/// What adding a package gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// More packages to come.
    Pending,
    /// The last package: the whole body, and the first package's serial.
    Complete { body: Vec<u8>, first_serial: u16 },
}

/// Why a package was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("package {index} of {total}: index out of range")]
    BadIndex { index: u16, total: u16 },
    #[error("the message would hold more than {max} bytes; dropped")]
    TooLarge { max: usize },
}

/// The messages in progress of one session.
#[derive(Debug)]
pub struct Reassembly {
    partials: Vec<Partial>,
    held: usize,
    max_bytes: usize,
    timeout: Duration,
}

impl Reassembly {
    pub fn new(max_bytes: usize, timeout: Duration) -> Self {
        Reassembly {
            partials: Vec::new(),
            held: 0,
            max_bytes,
            timeout,
        }
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Messages in progress.
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Drops the messages idle for longer than the timeout; returns how many.
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let timeout = self.timeout;
        let before = self.partials.len();
        let mut freed = 0;
        self.partials.retain(|p| {
            let idle = now.duration_since(p.updated).unwrap_or_default();
            let keep = idle <= timeout;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.held -= freed;
        before - self.partials.len()
    }

    /// Adds one package.
    pub fn add(
        &mut self,
        h: &Header,
        p: Package,
        body: Vec<u8>,
        now: SystemTime,
    ) -> Result<Added, Refused> {
        if p.index == 0 || p.index > p.total {
            return Err(Refused::BadIndex {
                index: p.index,
                total: p.total,
            });
        }
        let first_serial = h.serial.wrapping_sub(p.index - 1);
        if p.total == 1 {
            return Ok(Added::Complete { body, first_serial });
        }
        let at = match self.partials.iter().position(|x| {
            x.id == h.id
                && x.total == p.total
                && x.first_serial == first_serial
                && x.terminal == h.terminal
        }) {
            Some(i) => i,
            None => {
                if self.partials.len() >= MAX_PARTIALS {
                    if let Some((oldest, _)) = self
                        .partials
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, x)| x.updated)
                    {
                        self.remove(oldest);
                    }
                }
                self.partials.push(Partial {
                    id: h.id,
                    total: p.total,
                    first_serial,
                    terminal: h.terminal,
                    updated: now,
                    parts: Vec::new(),
                    bytes: 0,
                });
                self.partials.len() - 1
            }
        };
        let replaced = self
            .partials
            .get(at)
            .and_then(|x| x.parts.iter().find(|(i, _)| *i == p.index))
            .map_or(0, |(_, b)| b.len());
        if self.held - replaced + body.len() > self.max_bytes {
            self.remove(at);
            return Err(Refused::TooLarge {
                max: self.max_bytes,
            });
        }
        let Some(x) = self.partials.get_mut(at) else {
            return Ok(Added::Pending);
        };
        x.updated = now;
        self.held = self.held - replaced + body.len();
        x.bytes = x.bytes - replaced + body.len();
        match x.parts.iter_mut().find(|(i, _)| *i == p.index) {
            Some(slot) => slot.1 = body,
            None => x.parts.push((p.index, body)),
        }
        if x.parts.len() < usize::from(x.total) {
            return Ok(Added::Pending);
        }
        let mut x = self.partials.swap_remove(at);
        self.held -= x.bytes;
        x.parts.sort_unstable_by_key(|(i, _)| *i);
        let mut body = Vec::with_capacity(x.bytes);
        for (_, b) in &x.parts {
            body.extend_from_slice(b);
        }
        Ok(Added::Complete {
            body,
            first_serial: x.first_serial,
        })
    }

    fn remove(&mut self, at: usize) {
        if at < self.partials.len() {
            let x = self.partials.swap_remove(at);
            self.held -= x.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jt808::frame::SUBPACKAGED;

    fn header(id: u16, serial: u16) -> Header {
        Header {
            id,
            attributes: SUBPACKAGED,
            version: None,
            terminal: Terminal::from_id("013912345678").unwrap(),
            serial,
            short_serial: false,
            package: None,
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn pk(index: u16, total: u16) -> Package {
        Package { total, index }
    }

    #[test]
    fn joins_packages_in_order_whatever_order_they_arrive_in() {
        let mut r = Reassembly::new(1024, Duration::from_secs(60));
        assert_eq!(
            r.add(&header(0x0801, 12), pk(3, 3), b"c".to_vec(), t(0)),
            Ok(Added::Pending)
        );
        assert_eq!(
            r.add(&header(0x0801, 10), pk(1, 3), b"a".to_vec(), t(1)),
            Ok(Added::Pending)
        );
        // A resent package replaces the one held.
        assert_eq!(
            r.add(&header(0x0801, 10), pk(1, 3), b"A".to_vec(), t(2)),
            Ok(Added::Pending)
        );
        assert_eq!(r.held(), 2);
        assert_eq!(
            r.add(&header(0x0801, 11), pk(2, 3), b"b".to_vec(), t(3)),
            Ok(Added::Complete {
                body: b"Abc".to_vec(),
                first_serial: 10
            })
        );
        assert_eq!((r.held(), r.in_progress()), (0, 0));
        assert_eq!(
            r.add(&header(0x0801, 5), pk(1, 1), b"x".to_vec(), t(4)),
            Ok(Added::Complete {
                body: b"x".to_vec(),
                first_serial: 5
            })
        );
    }

    #[test]
    fn bounded_by_bytes_count_and_time() {
        let mut r = Reassembly::new(10, Duration::from_secs(60));
        assert_eq!(
            r.add(&header(0x0801, 1), pk(1, 9), vec![0; 8], t(0)),
            Ok(Added::Pending)
        );
        assert_eq!(
            r.add(&header(0x0801, 2), pk(2, 9), vec![0; 3], t(0)),
            Err(Refused::TooLarge { max: 10 })
        );
        assert_eq!((r.held(), r.in_progress()), (0, 0));
        for i in 0..(MAX_PARTIALS as u16 + 2) {
            r.add(&header(0x0900, i * 100), pk(1, 2), vec![1], t(u64::from(i)))
                .unwrap();
        }
        assert_eq!(r.in_progress(), MAX_PARTIALS);
        assert_eq!(r.held(), MAX_PARTIALS);
        assert_eq!(r.expire(t(60 + 4)), 2, "idle for more than 60 s");
        assert_eq!(r.expire(t(1_000)), MAX_PARTIALS - 2);
        assert_eq!(r.held(), 0);
        assert_eq!(
            r.add(&header(0x0900, 1), pk(0, 2), vec![], t(0)),
            Err(Refused::BadIndex { index: 0, total: 2 })
        );
        assert_eq!(
            r.add(&header(0x0900, 1), pk(3, 2), vec![], t(0)),
            Err(Refused::BadIndex { index: 3, total: 2 })
        );
    }
}
