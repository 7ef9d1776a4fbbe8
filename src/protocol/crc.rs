//! The checksums the protocols use, as `crc` catalogue algorithms.
//!
//! Both use the crate's slicing-by-16 tables (16 × 256 entries, built at compile time): the
//! CRC covers every byte of every frame, and with the default one-table implementation it
//! was the largest single cost of decoding a Teltonika frame (docs/performance.md).

use crc::{Crc, Table, CRC_16_ARC, CRC_16_IBM_SDLC};

/// CRC-16/ARC (a.k.a. CRC-16/IBM): Teltonika frames and Wialon IPS 2.0 packets.
pub const CRC16_ARC: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_ARC);

/// CRC-16/X-25 (CRC-ITU, `CRC_16_IBM_SDLC` in the catalogue): GT06 frames.
pub const CRC16_X25: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_SDLC);

pub fn arc(data: &[u8]) -> u16 {
    CRC16_ARC.checksum(data)
}

pub fn x25(data: &[u8]) -> u16 {
    CRC16_X25.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_check_values() {
        assert_eq!(arc(b"123456789"), 0xBB3D);
        assert_eq!(x25(b"123456789"), 0x906E);
    }
}
