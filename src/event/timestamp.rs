//! `google.protobuf.Timestamp` for the schema, with the canonical proto3 JSON form: RFC 3339 in
//! UTC with a `Z` and 0, 3, 6 or 9 fractional digits (`2026-12-02T05:08:25.120Z`).
//!
//! The generated code uses this type for every `google.protobuf.Timestamp` field (`build.rs`
//! maps it with `extern_path`): `pbjson-types`' own type writes `+00:00`, which the canonical
//! mapping does not allow. The protobuf encoding is the well-known type's (fields 1 and 2).

use std::fmt::Write as _;

use crate::protocol::civil::{civil_from_secs, days_from_civil};

/// Seconds and nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
#[prost(skip_debug)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The proto3 JSON range: 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    /// The canonical JSON text, or `None` outside the range JSON can express.
    pub fn to_rfc3339(&self) -> Option<String> {
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds)
            || !(0..1_000_000_000).contains(&self.nanos)
        {
            return None;
        }
        let (y, mo, d, h, mi, s) = civil_from_secs(self.seconds);
        let mut out = String::with_capacity(30);
        let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
        let n = self.nanos;
        if n != 0 {
            if n % 1_000_000 == 0 {
                let _ = write!(out, ".{:03}", n / 1_000_000);
            } else if n % 1_000 == 0 {
                let _ = write!(out, ".{:06}", n / 1_000);
            } else {
                let _ = write!(out, ".{n:09}");
            }
        }
        out.push('Z');
        Some(out)
    }

    /// Parses RFC 3339 (`Z` or a `±hh:mm` offset, up to 9 fractional digits).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = b.get(from..from + len)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if b.get(4) != Some(&b'-')
            || b.get(7) != Some(&b'-')
            || !matches!(b.get(10), Some(b'T' | b't' | b' '))
            || b.get(13) != Some(&b':')
            || b.get(16) != Some(&b':')
            || !(1..=12).contains(&mo)
            || !(1..=31).contains(&d)
            || h > 23
            || mi > 59
            || sec > 60
        {
            return None;
        }
        let mut at = 19;
        let mut nanos = 0i64;
        if b.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            let digits = at - start;
            if digits == 0 || digits > 9 {
                return None;
            }
            nanos = num(start, digits)? * 10i64.pow(9 - digits as u32);
        }
        let offset = match b.get(at)? {
            b'Z' | b'z' if at + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if at + 6 == b.len() && b.get(at + 3) == Some(&b':') => {
                let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let seconds = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
        Some(Timestamp {
            seconds,
            nanos: nanos as i32,
        })
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_rfc3339() {
            Some(s) => f.write_str(&s),
            None => write!(f, "Timestamp({}, {})", self.seconds, self.nanos),
        }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.to_rfc3339() {
            Some(text) => s.serialize_str(&text),
            None => Err(serde::ser::Error::custom(
                "timestamp outside the RFC 3339 range",
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn canonical_text_uses_z_and_the_shortest_fraction_group() {
        assert_eq!(ts(0, 0).to_rfc3339().unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            ts(1_795_217_550, 120_000_000).to_rfc3339().unwrap(),
            "2026-11-20T23:32:30.120Z"
        );
        assert_eq!(
            ts(1_795_217_550, 120_500_000).to_rfc3339().unwrap(),
            "2026-11-20T23:32:30.120500Z"
        );
        assert_eq!(
            ts(1_795_217_550, 1).to_rfc3339().unwrap(),
            "2026-11-20T23:32:30.000000001Z"
        );
        assert_eq!(ts(MAX_SECONDS + 1, 0).to_rfc3339(), None);
        assert_eq!(ts(0, 1_000_000_000).to_rfc3339(), None);
    }

    #[test]
    fn parses_what_it_writes_and_offsets() {
        for t in [
            ts(0, 0),
            ts(1_795_217_550, 120_000_000),
            ts(-1, 999_999_999),
        ] {
            let s = t.to_rfc3339().unwrap();
            assert_eq!(Timestamp::parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-21T01:32:30+02:00"),
            Some(ts(1_795_217_550, 0))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-20T23:32:30.5Z"),
            Some(ts(1_795_217_550, 500_000_000))
        );
        for bad in [
            "",
            "2026-11-20",
            "2026-13-20T00:00:00Z",
            "2026-11-20T23:32:30",
            "x",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_is_a_string_with_z() {
        let json = serde_json::to_string(&ts(1_795_217_550, 0)).unwrap();
        assert_eq!(json, "\"2026-11-20T23:32:30Z\"");
        let back: Timestamp = serde_json::from_str("\"2026-11-20T23:32:30+00:00\"").unwrap();
        assert_eq!(back, ts(1_795_217_550, 0));
    }

    #[test]
    fn protobuf_bytes_are_the_well_known_types() {
        use prost::Message;
        let ours = ts(1_795_217_550, 120).encode_to_vec();
        let wkt = pbjson_types::Timestamp {
            seconds: 1_795_217_550,
            nanos: 120,
        }
        .encode_to_vec();
        assert_eq!(ours, wkt);
    }
}
