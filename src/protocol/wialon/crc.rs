//! Wialon IPS 2.0 checksums: parsing the `crc16` field and checking it.
//!
//! The algorithm is CRC-16/ARC (poly 0xA001 reflected, init 0), the same as [`crate::protocol::crc::arc`].
//! The table printed in the spec's Appendix 1 has one wrong entry (index 221 reads `0x99C0`,
//! the correct value is `0x59C0`). Firmware that copied that table verbatim computes a different
//! checksum whenever that index is hit, so a field that matches either variant is accepted; we
//! always *write* the correct CRC-16/ARC.

use crate::protocol::crc;

/// CRC-16/ARC table with the spec's typo at index 221.
const SPEC_TABLE: [u16; 256] = spec_table();

const fn spec_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u16;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xA001
            } else {
                c >> 1
            };
            bit += 1;
        }
        t[i] = c;
        i += 1;
    }
    t[221] = 0x99C0;
    t
}

/// The checksum a device computes with the spec's printed table.
fn spec_variant(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |c, &b| {
        (c >> 8) ^ SPEC_TABLE[usize::from((c as u8) ^ b)]
    })
}

/// The checksum we write (correct CRC-16/ARC).
pub fn compute(data: &[u8]) -> u16 {
    crc::arc(data)
}

/// Renders a checksum the way the spec wants it: upper-case hex, no leading zeros.
pub fn render(data: &[u8]) -> String {
    format!("{:X}", compute(data))
}

/// Parses a `crc16` field: hex in either case, optionally `0x`-prefixed, leading zeros
/// tolerated. `None` when it is not a 16-bit hex number.
pub fn parse_field(field: &[u8]) -> Option<u16> {
    let digits = match field {
        [b'0', b'x' | b'X', rest @ ..] => rest,
        _ => field,
    };
    // Bounded so a long run of zeros cannot make us scan forever; 8 is plenty for "0000FFFF".
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u16::try_from(u32::from_str_radix(text, 16).ok()?).ok()
}

/// Whether `field` is the checksum of `data`. `None` when `field` is not a checksum at all.
pub fn check(data: &[u8], field: &[u8]) -> Option<bool> {
    let want = parse_field(field)?;
    Some(want == compute(data) || want == spec_variant(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_index_221_differs_from_arc() {
        let diffs: Vec<_> = (0u8..=255)
            .filter(|&b| spec_variant(&[b]) != compute(&[b]))
            .collect();
        assert_eq!(diffs, vec![221]);
        assert_eq!(compute(b"123456789"), 0xBB3D);
    }

    #[test]
    fn fields() {
        assert_eq!(parse_field(b"0x9b0"), Some(0x9B0));
        assert_eq!(parse_field(b"9B0"), Some(0x9B0));
        assert_eq!(parse_field(b"09b0"), Some(0x9B0));
        assert_eq!(parse_field(b"0X9B0"), Some(0x9B0));
        assert_eq!(parse_field(b""), None);
        assert_eq!(parse_field(b"0x"), None);
        assert_eq!(parse_field(b"1FFFF"), None);
        assert_eq!(parse_field(b"NA"), None);
        assert_eq!(parse_field(b"+1"), None);
    }
}
