//! AVL data of Codec 8, 8 Extended and 16: parse into owned records and encode back
//! (`mapping` turns a record into an event).
//!
//! `data` here always starts at the codec id and ends with the second record count, which is
//! the same in the TCP frame and the UDP datagram.

use crate::protocol::cursor::Cursor;

/// A telemetry codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    C8,
    C8E,
    C16,
}

impl Codec {
    pub fn from_id(id: u8) -> Option<Codec> {
        match id {
            0x08 => Some(Codec::C8),
            0x8E => Some(Codec::C8E),
            0x10 => Some(Codec::C16),
            _ => None,
        }
    }
    pub fn id(self) -> u8 {
        match self {
            Codec::C8 => 0x08,
            Codec::C8E => 0x8E,
            Codec::C16 => 0x10,
        }
    }
    fn wide_ids(self) -> bool {
        !matches!(self, Codec::C8)
    }
    fn wide_counts(self) -> bool {
        matches!(self, Codec::C8E)
    }
}

/// One IO element value as the device sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoValue {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    /// Codec 8E NX (variable-length) value.
    Bytes(Vec<u8>),
}

impl IoValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            IoValue::U8(v) => Some(v.into()),
            IoValue::U16(v) => Some(v.into()),
            IoValue::U32(v) => Some(v.into()),
            IoValue::U64(v) => Some(v),
            IoValue::Bytes(_) => None,
        }
    }
}

/// One AVL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp_ms: u64,
    pub priority: u8,
    /// Degrees × 10^7.
    pub longitude: i32,
    /// Degrees × 10^7.
    pub latitude: i32,
    pub altitude: i16,
    pub angle: u16,
    pub satellites: u8,
    pub speed: u16,
    pub event_io: u16,
    /// Codec 16 only.
    pub generation_type: Option<u8>,
    pub io: Vec<(u16, IoValue)>,
}

/// Why AVL data did not parse. Every variant is a malformed frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvlError {
    #[error("unknown codec {0:#04x}")]
    UnknownCodec(u8),
    #[error("data ends inside {0}")]
    Truncated(&'static str),
    #[error("record counts differ: {0} at the start, {1} at the end")]
    CountMismatch(u8, u8),
    #[error("{0} bytes left after the last record")]
    TrailingBytes(usize),
    #[error("{count} IO elements cannot fit in the {remaining} bytes left")]
    ImpossibleCount { count: usize, remaining: usize },
}

/// Smallest possible record (all IO counts zero) per codec: 24 bytes of GPS + IO header.
fn min_record_len(codec: Codec) -> usize {
    24 + match codec {
        Codec::C8 => 2 + 4,
        Codec::C8E => 4 + 4 * 2 + 2,
        Codec::C16 => 2 + 1 + 1 + 4,
    }
}

/// Parses AVL data (codec id .. second record count).
pub fn parse(data: &[u8]) -> Result<(Codec, Vec<Record>), AvlError> {
    let mut c = Cursor::new(data);
    let id = c.u8().ok_or(AvlError::Truncated("codec id"))?;
    let codec = Codec::from_id(id).ok_or(AvlError::UnknownCodec(id))?;
    // Zero records is a valid (empty) frame: devices send it, and expect the ACK 0.
    let n1 = c.u8().ok_or(AvlError::Truncated("record count"))?;
    let need = usize::from(n1) * min_record_len(codec);
    if need > c.remaining() {
        return Err(AvlError::ImpossibleCount {
            count: n1.into(),
            remaining: c.remaining(),
        });
    }
    let mut records = Vec::with_capacity(n1.into());
    for _ in 0..n1 {
        records.push(parse_record(&mut c, codec)?);
    }
    let n2 = c.u8().ok_or(AvlError::Truncated("second record count"))?;
    if n1 != n2 {
        return Err(AvlError::CountMismatch(n1, n2));
    }
    if c.remaining() != 0 {
        return Err(AvlError::TrailingBytes(c.remaining()));
    }
    Ok((codec, records))
}

fn parse_record(c: &mut Cursor<'_>, codec: Codec) -> Result<Record, AvlError> {
    let gps = "GPS element";
    let timestamp_ms = need(c.u64(), gps)?;
    let priority = need(c.u8(), gps)?;
    let longitude = need(c.i32(), gps)?;
    let latitude = need(c.i32(), gps)?;
    let altitude = need(c.i16(), gps)?;
    let angle = need(c.u16(), gps)?;
    let satellites = need(c.u8(), gps)?;
    let speed = need(c.u16(), gps)?;

    let io_hdr = "IO header";
    let (event_io, generation_type) = match codec {
        Codec::C8 => (u16::from(need(c.u8(), io_hdr)?), None),
        Codec::C8E => (need(c.u16(), io_hdr)?, None),
        Codec::C16 => (need(c.u16(), io_hdr)?, Some(need(c.u8(), io_hdr)?)),
    };
    // The total IO count is redundant with the per-size counts; devices are known to get it
    // wrong, so it is not enforced. It only sizes the vector (one allocation instead of one per
    // size group), capped by what the remaining bytes can hold so a lying count cannot make us
    // reserve memory the frame does not pay for.
    let total = if codec.wide_counts() {
        usize::from(need(c.u16(), io_hdr)?)
    } else {
        usize::from(need(c.u8(), io_hdr)?)
    };
    let id_len = if codec.wide_ids() { 2 } else { 1 };
    let mut io = Vec::with_capacity(total.min(c.remaining() / (id_len + 1)));
    for size in [1usize, 2, 4, 8] {
        let n = read_count(c, codec)?;
        check_fits(n, id_len + size, c.remaining())?;
        io.reserve(n);
        for _ in 0..n {
            let id = read_id(c, codec)?;
            let v = c.uint(size).ok_or(AvlError::Truncated("IO value"))?;
            let value = match size {
                1 => IoValue::U8(v as u8),
                2 => IoValue::U16(v as u16),
                4 => IoValue::U32(v as u32),
                _ => IoValue::U64(v),
            };
            io.push((id, value));
        }
    }
    if codec == Codec::C8E {
        let n = usize::from(c.u16().ok_or(AvlError::Truncated("NX count"))?);
        check_fits(n, 4, c.remaining())?;
        io.reserve(n);
        for _ in 0..n {
            let id = c.u16().ok_or(AvlError::Truncated("NX id"))?;
            let len = c.u16().ok_or(AvlError::Truncated("NX length"))?;
            let v = c.take(len.into()).ok_or(AvlError::Truncated("NX value"))?;
            io.push((id, IoValue::Bytes(v.to_vec())));
        }
    }
    Ok(Record {
        timestamp_ms,
        priority,
        longitude,
        latitude,
        altitude,
        angle,
        satellites,
        speed,
        event_io,
        generation_type,
        io,
    })
}

fn need<T>(v: Option<T>, what: &'static str) -> Result<T, AvlError> {
    v.ok_or(AvlError::Truncated(what))
}

fn read_count(c: &mut Cursor<'_>, codec: Codec) -> Result<usize, AvlError> {
    let n = if codec.wide_counts() {
        c.u16().map(usize::from)
    } else {
        c.u8().map(usize::from)
    };
    n.ok_or(AvlError::Truncated("IO count"))
}

fn read_id(c: &mut Cursor<'_>, codec: Codec) -> Result<u16, AvlError> {
    let id = if codec.wide_ids() {
        c.u16()
    } else {
        c.u8().map(u16::from)
    };
    id.ok_or(AvlError::Truncated("IO id"))
}

fn check_fits(count: usize, each: usize, remaining: usize) -> Result<(), AvlError> {
    if count.saturating_mul(each) > remaining {
        Err(AvlError::ImpossibleCount { count, remaining })
    } else {
        Ok(())
    }
}

/// Encodes records as AVL data (codec id .. second count). Used by tests, the simulator and
/// the fuzz targets. Values that do not fit the codec (NX values outside 8E, ids over 255 in
/// Codec 8, more than 255 records) are the caller's bug and are truncated, not checked.
pub fn encode(codec: Codec, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + records.len() * 64);
    out.push(codec.id());
    out.push(records.len() as u8);
    for r in records {
        out.extend_from_slice(&r.timestamp_ms.to_be_bytes());
        out.push(r.priority);
        out.extend_from_slice(&r.longitude.to_be_bytes());
        out.extend_from_slice(&r.latitude.to_be_bytes());
        out.extend_from_slice(&r.altitude.to_be_bytes());
        out.extend_from_slice(&r.angle.to_be_bytes());
        out.push(r.satellites);
        out.extend_from_slice(&r.speed.to_be_bytes());
        match codec {
            Codec::C8 => out.push(r.event_io as u8),
            Codec::C8E => out.extend_from_slice(&r.event_io.to_be_bytes()),
            Codec::C16 => {
                out.extend_from_slice(&r.event_io.to_be_bytes());
                out.push(r.generation_type.unwrap_or(0));
            }
        }
        let total = r.io.len();
        if codec.wide_counts() {
            out.extend_from_slice(&(total as u16).to_be_bytes());
        } else {
            out.push(total as u8);
        }
        let put_count = |out: &mut Vec<u8>, n: usize| {
            if codec.wide_counts() {
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(n as u8);
            }
        };
        let put_id = |out: &mut Vec<u8>, id: u16| {
            if codec.wide_ids() {
                out.extend_from_slice(&id.to_be_bytes());
            } else {
                out.push(id as u8);
            }
        };
        for size in [1usize, 2, 4, 8] {
            let group: Vec<_> =
                r.io.iter()
                    .filter(|(_, v)| value_size(v) == Some(size))
                    .collect();
            put_count(&mut out, group.len());
            for (id, v) in group {
                put_id(&mut out, *id);
                let raw = v.as_u64().unwrap_or(0).to_be_bytes();
                out.extend_from_slice(&raw[8 - size..]);
            }
        }
        if codec == Codec::C8E {
            let nx: Vec<_> =
                r.io.iter()
                    .filter(|(_, v)| value_size(v).is_none())
                    .collect();
            out.extend_from_slice(&(nx.len() as u16).to_be_bytes());
            for (id, v) in nx {
                if let IoValue::Bytes(b) = v {
                    out.extend_from_slice(&id.to_be_bytes());
                    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }
    out.push(records.len() as u8);
    out
}

fn value_size(v: &IoValue) -> Option<usize> {
    match v {
        IoValue::U8(_) => Some(1),
        IoValue::U16(_) => Some(2),
        IoValue::U32(_) => Some(4),
        IoValue::U64(_) => Some(8),
        IoValue::Bytes(_) => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn arb_record(codec: Codec) -> impl Strategy<Value = Record> {
        let id = if codec.wide_ids() {
            0u16..=u16::MAX
        } else {
            0u16..=255
        };
        let fixed = prop_oneof![
            any::<u8>().prop_map(IoValue::U8),
            any::<u16>().prop_map(IoValue::U16),
            any::<u32>().prop_map(IoValue::U32),
            any::<u64>().prop_map(IoValue::U64),
        ];
        let value = if codec == Codec::C8E {
            prop_oneof![4 => fixed, 1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(IoValue::Bytes)].boxed()
        } else {
            fixed.boxed()
        };
        (
            (
                any::<u64>(),
                any::<u8>(),
                any::<i32>(),
                any::<i32>(),
                any::<i16>(),
                any::<u16>(),
                any::<u8>(),
                any::<u16>(),
            ),
            if codec.wide_ids() {
                any::<u16>().boxed()
            } else {
                (0u16..=255).boxed()
            },
            if codec == Codec::C16 {
                (0u8..=7).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            },
            proptest::collection::vec((id, value), 0..12),
        )
            .prop_map(move |((ts, pr, lon, lat, alt, ang, sat, spd), ev, g, io)| {
                // The encoder groups values by size; sort the same way so the round trip compares.
                let mut io = io;
                io.sort_by_key(|(_, v)| value_size(v).unwrap_or(usize::MAX));
                Record {
                    timestamp_ms: ts,
                    priority: pr,
                    longitude: lon,
                    latitude: lat,
                    altitude: alt,
                    angle: ang,
                    satellites: sat,
                    speed: spd,
                    event_io: ev,
                    generation_type: g,
                    io,
                }
            })
    }

    fn arb_packet() -> impl Strategy<Value = (Codec, Vec<Record>)> {
        prop_oneof![Just(Codec::C8), Just(Codec::C8E), Just(Codec::C16)]
            .prop_flat_map(|c| (Just(c), proptest::collection::vec(arb_record(c), 1..8)))
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips((codec, records) in arb_packet()) {
            let data = encode(codec, &records);
            let (c2, back) = parse(&data).unwrap();
            prop_assert_eq!(c2, codec);
            prop_assert_eq!(back, records);
        }

        #[test]
        fn parse_never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&data);
        }

        #[test]
        fn parse_rejects_every_truncation((codec, records) in arb_packet(), cut in 0usize..1000) {
            let data = encode(codec, &records);
            let cut = cut % data.len();
            prop_assert!(parse(&data[..cut]).is_err());
        }
    }

    #[test]
    fn count_mismatch_and_trailing_bytes_are_rejected() {
        let r = Record {
            timestamp_ms: 1,
            priority: 0,
            longitude: 0,
            latitude: 0,
            altitude: 0,
            angle: 0,
            satellites: 0,
            speed: 0,
            event_io: 0,
            generation_type: None,
            io: vec![],
        };
        let mut data = encode(Codec::C8, std::slice::from_ref(&r));
        *data.last_mut().unwrap() = 2;
        assert_eq!(parse(&data), Err(AvlError::CountMismatch(1, 2)));
        let mut data = encode(Codec::C8, &[r]);
        data.push(0);
        assert_eq!(parse(&data), Err(AvlError::TrailingBytes(1)));
    }

    #[test]
    fn absurd_io_count_is_rejected_before_allocating() {
        // Codec 8E record whose first IO group claims 65535 elements.
        let mut data = vec![0x8E, 1];
        data.extend_from_slice(&[0; 24]);
        data.extend_from_slice(&[0, 0, 0, 1, 0xff, 0xff]);
        data.extend_from_slice(&[0; 10]);
        data.push(1);
        assert!(matches!(
            parse(&data),
            Err(AvlError::ImpossibleCount { .. })
        ));
    }
}
