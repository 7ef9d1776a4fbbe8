//! The compressed container: `0xFF`, u16 little-endian size, then a zlib stream holding exactly
//! one text packet (its `\r\n` may be omitted).
//!
//! Inflation reads through [`std::io::Read::take`], so a small container that expands to
//! gigabytes (a "zip bomb") costs at most the cap plus one byte of memory.

use std::io::Read;

use flate2::read::{DeflateDecoder, ZlibDecoder};

/// The compression sign.
pub const MARKER: u8 = 0xFF;
/// Marker + size.
pub const HEADER_LEN: usize = 3;

/// What the front of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Not enough bytes yet.
    Incomplete,
    /// A container of `total` bytes, header included.
    Complete { total: usize },
}

/// Why a container was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContainerError {
    #[error("compressed container declares {0} bytes (cap {1})")]
    TooLarge(usize, usize),
    #[error("compressed container declares an empty block")]
    Empty,
    #[error("inflated packet exceeds {0} bytes")]
    InflatedTooLarge(usize),
    #[error("corrupt compressed data: {0}")]
    Corrupt(String),
}

/// Finds a container at the front of `buf` (which starts with [`MARKER`]).
pub fn split(buf: &[u8], cap: usize) -> Result<Split, ContainerError> {
    let Some(&[lo, hi]) = buf.get(1..HEADER_LEN) else {
        return Ok(Split::Incomplete);
    };
    let size = usize::from(u16::from_le_bytes([lo, hi]));
    if size == 0 {
        return Err(ContainerError::Empty);
    }
    if size > cap {
        return Err(ContainerError::TooLarge(size, cap));
    }
    let total = HEADER_LEN + size;
    if buf.len() < total {
        return Ok(Split::Incomplete);
    }
    Ok(Split::Complete { total })
}

/// Inflates one container's data, refusing more than `cap` bytes of output (plus room for
/// the optional `\r\n`). zlib-wrapped as the spec's example; raw DEFLATE as a fallback because
/// the spec also cites RFC 1951 and some firmware takes it literally.
pub fn inflate(data: &[u8], cap: usize) -> Result<Vec<u8>, ContainerError> {
    let limit = cap.saturating_add(2);
    let zlib_header = matches!(data, [cmf, flg, ..]
        if cmf & 0x0F == 8 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0);
    let mut out = Vec::new();
    let read = if zlib_header {
        ZlibDecoder::new(data)
            .take((limit as u64).saturating_add(1))
            .read_to_end(&mut out)
    } else {
        DeflateDecoder::new(data)
            .take((limit as u64).saturating_add(1))
            .read_to_end(&mut out)
    };
    read.map_err(|e| ContainerError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(ContainerError::InflatedTooLarge(cap));
    }
    Ok(out)
}

/// Builds a container (tests and tools; devices are the ones compressing).
pub fn compress(packet: &[u8]) -> Vec<u8> {
    use flate2::{write::ZlibEncoder, Compression};
    use std::io::Write;
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::best());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(packet);
    let body = enc.finish().unwrap_or_default();
    let size = u16::try_from(body.len()).unwrap_or(u16::MAX);
    let mut out = vec![MARKER];
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&body);
    out
}
