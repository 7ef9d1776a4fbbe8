//! Where a Retranslator packet ends: a little-endian u32 size (the spec's only little-endian
//! integer besides the doubles), then that many bytes. The cap is checked on the size field,
//! before anything is buffered or allocated for the packet.

/// The size field.
pub const SIZE_LEN: usize = 4;

/// The smallest packet the spec allows after the size field: a one-character unit id, its
/// NUL, time and flags (no blocks).
pub const MIN_SIZE: u32 = 10;

/// Why a stream cannot be framed: both lose the packet boundary, so the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet size {0} is below the smallest packet ({MIN_SIZE})")]
    TooSmall(u32),
    #[error("packet of {total} bytes is over the {cap}-byte cap (max_frame_bytes)")]
    TooLarge { total: u64, cap: usize },
}

/// The declared size of the packet at the front of `buf`, once its size field is in.
pub fn declared_size(buf: &[u8]) -> Option<u32> {
    let b: [u8; SIZE_LEN] = buf.get(..SIZE_LEN)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// The length of the packet at the front of `buf`, size field included, when all of it is
/// in; `Ok(None)` while it is not. `cap` bounds the whole packet (size field included) and
/// is checked as soon as the size field is in.
pub fn split(buf: &[u8], cap: usize) -> Result<Option<usize>, FrameError> {
    let Some(size) = declared_size(buf) else {
        return Ok(None);
    };
    if size < MIN_SIZE {
        return Err(FrameError::TooSmall(size));
    }
    let total = u64::from(size) + SIZE_LEN as u64;
    match usize::try_from(total) {
        Ok(t) if t <= cap => Ok((buf.len() >= t).then_some(t)),
        _ => Err(FrameError::TooLarge { total, cap }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_whole_packets_only_and_checks_the_cap_before_the_body() {
        let mut p = 12u32.to_le_bytes().to_vec();
        p.extend_from_slice(b"ab\0timeflag\xff");
        assert_eq!(split(&p, 64), Ok(Some(16)));
        for n in 0..p.len() {
            assert_eq!(split(&p[..n], 64), Ok(None), "prefix {n}");
        }
        let mut two = p.clone();
        two.extend_from_slice(&p);
        assert_eq!(split(&two, 64), Ok(Some(16)));
        // The cap covers the size field: 16 bytes fit 16, not 15.
        assert_eq!(split(&p, 16), Ok(Some(16)));
        assert_eq!(
            split(&p[..4], 15),
            Err(FrameError::TooLarge { total: 16, cap: 15 })
        );
        assert_eq!(
            split(&u32::MAX.to_le_bytes(), usize::MAX),
            Ok(None),
            "a 4 GiB packet waits when the cap allows it"
        );
        assert_eq!(
            split(&u32::MAX.to_le_bytes(), 1 << 20),
            Err(FrameError::TooLarge {
                total: u64::from(u32::MAX) + 4,
                cap: 1 << 20
            })
        );
    }

    #[test]
    fn sizes_below_the_smallest_packet_lose_the_framing() {
        for s in 0..MIN_SIZE {
            assert_eq!(
                split(&s.to_le_bytes(), 1 << 20),
                Err(FrameError::TooSmall(s))
            );
        }
        assert_eq!(split(&MIN_SIZE.to_le_bytes(), 1 << 20), Ok(None));
    }
}
