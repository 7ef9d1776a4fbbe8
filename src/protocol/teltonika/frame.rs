//! Teltonika framing: the TCP IMEI login, the TCP envelope (preamble, length, CRC), the UDP
//! datagram header, and the replies. Framing finds boundaries and checks sizes and CRCs;
//! `avl` and `command` parse what is inside.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::crc;
use crate::protocol::cursor::Cursor;

/// Longest IMEI (or serial) accepted in a login.
pub const MAX_IMEI_LEN: usize = 17;

/// Result of looking for a complete item at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split<T> {
    /// Not enough bytes yet.
    Incomplete,
    /// A complete item, and how many bytes it spans.
    Complete(T, usize),
}

/// The TCP login: `u16 length`, then the IMEI in ASCII.
pub fn split_login(buf: &[u8]) -> Result<Split<&[u8]>, &'static str> {
    let Some(len) = buf.get(..2) else {
        return Ok(Split::Incomplete);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len == 0 || len > MAX_IMEI_LEN {
        return Err("IMEI length out of range");
    }
    match buf.get(2..2 + len) {
        None => {
            if buf[2..].iter().all(u8::is_ascii_digit) {
                Ok(Split::Incomplete)
            } else {
                Err("IMEI is not ASCII digits")
            }
        }
        Some(imei) if imei.iter().all(u8::is_ascii_digit) => Ok(Split::Complete(imei, 2 + len)),
        Some(_) => Err("IMEI is not ASCII digits"),
    }
}

/// A TCP data frame, split and CRC-checked.
#[derive(Debug, PartialEq, Eq)]
pub struct TcpFrame<'a> {
    /// Codec id .. the end of the data (the CRC covers exactly this).
    pub data: &'a [u8],
    pub crc_ok: bool,
}

/// Why a TCP envelope cannot be framed: the stream has lost sync.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("preamble is not four zero bytes")]
    BadPreamble,
    #[error("data length {0} is out of range (3..={1})")]
    BadLength(usize, usize),
}

/// Splits one `00000000 <len u32> <data> <crc u32>` frame. `max_frame` caps the whole frame
/// and is checked before anything is buffered for it.
pub fn split_tcp(buf: &[u8], max_frame: usize) -> Result<Split<TcpFrame<'_>>, FramingError> {
    let n = buf.len().min(4);
    if buf[..n].iter().any(|&b| b != 0) {
        return Err(FramingError::BadPreamble);
    }
    let Some(hdr) = buf.get(4..8) else {
        return Ok(Split::Incomplete);
    };
    let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    let max_data = max_frame.saturating_sub(12);
    if !(3..=max_data).contains(&len) {
        return Err(FramingError::BadLength(len, max_data));
    }
    let total = 12 + len;
    let Some(frame) = buf.get(..total) else {
        return Ok(Split::Incomplete);
    };
    let data = &frame[8..8 + len];
    let crc_field = u32::from_be_bytes([
        frame[total - 4],
        frame[total - 3],
        frame[total - 2],
        frame[total - 1],
    ]);
    let crc_ok = crc_field == u32::from(crc::arc(data));
    Ok(Split::Complete(TcpFrame { data, crc_ok }, total))
}

/// Wraps data (codec id ..) in the TCP envelope with its CRC.
pub fn encode_tcp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&u32::from(crc::arc(data)).to_be_bytes());
    out
}

/// The login message a device sends.
pub fn encode_login(imei: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(imei.len() + 2);
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
    out
}

/// The UDP datagram header and the AVL data it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub packet_id: u16,
    pub avl_packet_id: u8,
    pub imei: &'a str,
    /// Codec id .. second record count.
    pub data: &'a [u8],
}

/// Parses a whole UDP datagram: `len u16, packet id u16, 0x01, AVL packet id u8, IMEI length
/// u16, IMEI, data`. The length must match the datagram exactly.
pub fn parse_udp(d: &[u8]) -> Result<UdpDatagram<'_>, &'static str> {
    let mut c = Cursor::new(d);
    let len = c.u16().ok_or("datagram shorter than its header")?;
    if usize::from(len) != c.remaining() {
        return Err("datagram length field does not match the datagram");
    }
    let packet_id = c.u16().ok_or("datagram shorter than its header")?;
    let _not_usable = c.u8().ok_or("datagram shorter than its header")?;
    let avl_packet_id = c.u8().ok_or("datagram shorter than its header")?;
    let imei_len = usize::from(c.u16().ok_or("datagram shorter than its header")?);
    if imei_len == 0 || imei_len > MAX_IMEI_LEN {
        return Err("IMEI length out of range");
    }
    let imei = c.take(imei_len).ok_or("datagram ends inside the IMEI")?;
    if !imei.iter().all(u8::is_ascii_digit) {
        return Err("IMEI is not ASCII digits");
    }
    let imei = std::str::from_utf8(imei).map_err(|_| "IMEI is not ASCII digits")?;
    Ok(UdpDatagram {
        packet_id,
        avl_packet_id,
        imei,
        data: c.rest(),
    })
}

/// Builds a UDP datagram (for tests and the simulator).
pub fn encode_udp(packet_id: u16, avl_packet_id: u8, imei: &str, data: &[u8]) -> Vec<u8> {
    let body_len = 2 + 1 + 1 + 2 + imei.len() + data.len();
    let mut out = Vec::with_capacity(body_len + 2);
    out.extend_from_slice(&(body_len as u16).to_be_bytes());
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.push(0x01);
    out.push(avl_packet_id);
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
    out.extend_from_slice(data);
    out
}

/// TCP ACK: the number of accepted records, u32 big-endian.
pub fn tcp_ack(count: u32) -> Bytes {
    Bytes::copy_from_slice(&count.to_be_bytes())
}

/// UDP ACK: `00 05 <packet id> 01 <AVL packet id> <count>`, echoing the packet id as the spec
/// says.
pub fn udp_ack(packet_id: u16, avl_packet_id: u8, count: u8) -> Bytes {
    let mut b = BytesMut::with_capacity(7);
    b.put_u16(5);
    b.put_u16(packet_id);
    b.put_u8(0x01);
    b.put_u8(avl_packet_id);
    b.put_u8(count);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_split() {
        let l = hex::decode("000f333536333037303432343431303133").unwrap();
        assert_eq!(
            split_login(&l),
            Ok(Split::Complete(&b"356307042441013"[..], 17))
        );
        for n in 0..l.len() {
            assert_eq!(split_login(&l[..n]), Ok(Split::Incomplete), "prefix {n}");
        }
        assert!(split_login(&[0, 0]).is_err());
        assert!(split_login(&[0xff, 0xff]).is_err());
        assert!(split_login(&[0, 3, b'1', b'x']).is_err());
    }

    #[test]
    fn tcp_split_checks_crc_and_caps_length_before_buffering() {
        let data = [0x08, 0x00, 0x00];
        let f = encode_tcp(&data);
        match split_tcp(&f, 1280).unwrap() {
            Split::Complete(fr, n) => {
                assert_eq!(n, f.len());
                assert!(fr.crc_ok);
                assert_eq!(fr.data, &data);
            }
            s => panic!("{s:?}"),
        }
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            split_tcp(&bad, 1280),
            Ok(Split::Complete(TcpFrame { crc_ok: false, .. }, _))
        ));
        // A 4 GiB length is refused from the 8-byte header alone.
        assert_eq!(
            split_tcp(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], 1280),
            Err(FramingError::BadLength(0xffff_ffff, 1268))
        );
        assert_eq!(split_tcp(&[0, 1], 1280), Err(FramingError::BadPreamble));
        for n in 0..f.len() {
            assert_eq!(split_tcp(&f[..n], 1280), Ok(Split::Incomplete));
        }
    }

    #[test]
    fn udp_ack_echoes_packet_id() {
        assert_eq!(
            &udp_ack(0xCAFE, 0x07, 2)[..],
            &[0x00, 0x05, 0xCA, 0xFE, 0x01, 0x07, 0x02]
        );
    }

    #[test]
    fn udp_round_trip_and_length_check() {
        let d = encode_udp(0xCAFE, 0x07, "352093081452251", &[0x08, 0x00, 0x00]);
        let p = parse_udp(&d).unwrap();
        assert_eq!(
            (p.packet_id, p.avl_packet_id, p.imei),
            (0xCAFE, 0x07, "352093081452251")
        );
        assert_eq!(p.data, &[0x08, 0x00, 0x00]);
        assert!(parse_udp(&d[..d.len() - 1]).is_err());
    }
}
