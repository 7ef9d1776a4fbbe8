//! Helpers to build `TelemetryEvent`s: raw device values, attribute values, timestamps,
//! event ids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod encode;
pub mod timestamp;

pub use timestamp::Timestamp;

use crate::proto::{attribute_value::Value, raw_value, AttributeValue, RawValue, TelemetryEvent};
use crate::vocab::{self, Mapper, Profile};

/// Raw device values (`TelemetryEvent.raw`): keyed by the protocol's numeric id or its name.
pub mod raw {
    use super::*;

    /// A position event carrying `values` as its raw values: what the mapping tests feed a
    /// profile.
    #[cfg(test)]
    pub fn position_event(values: Vec<RawValue>) -> TelemetryEvent {
        TelemetryEvent {
            kind: crate::proto::EventKind::Position as i32,
            position: Some(crate::proto::Position::default()),
            raw: values,
            ..Default::default()
        }
    }

    fn named(name: impl Into<String>, value: raw_value::Value) -> RawValue {
        RawValue {
            id: None,
            name: name.into(),
            value: Some(value),
        }
    }

    fn numbered(id: u32, value: raw_value::Value) -> RawValue {
        RawValue {
            id: Some(id),
            name: String::new(),
            value: Some(value),
        }
    }

    pub fn uint(name: impl Into<String>, v: u64) -> RawValue {
        named(name, raw_value::Value::UintValue(v))
    }
    pub fn int(name: impl Into<String>, v: i64) -> RawValue {
        named(name, raw_value::Value::IntValue(v))
    }
    pub fn double(name: impl Into<String>, v: f64) -> RawValue {
        named(name, raw_value::Value::DoubleValue(v))
    }
    pub fn string(name: impl Into<String>, v: impl Into<String>) -> RawValue {
        named(name, raw_value::Value::StringValue(v.into()))
    }
    pub fn bytes(name: impl Into<String>, v: impl Into<Vec<u8>>) -> RawValue {
        named(name, raw_value::Value::BytesValue(v.into()))
    }
    /// Text that is UTF-8 as a string, anything else as bytes (lossless either way).
    pub fn text(name: impl Into<String>, v: &[u8]) -> RawValue {
        match std::str::from_utf8(v) {
            Ok(s) => string(name, s),
            Err(_) => bytes(name, v),
        }
    }
    pub fn id_uint(id: u32, v: u64) -> RawValue {
        numbered(id, raw_value::Value::UintValue(v))
    }
    pub fn id_bytes(id: u32, v: impl Into<Vec<u8>>) -> RawValue {
        numbered(id, raw_value::Value::BytesValue(v.into()))
    }
}

impl RawValue {
    /// The value as the mapper reads it (width unknown: read as 8 bytes).
    pub fn as_value(&self) -> Option<vocab::Value<'_>> {
        Some(match self.value.as_ref()? {
            raw_value::Value::UintValue(v) => vocab::Value::Uint(*v, 8),
            raw_value::Value::IntValue(v) => vocab::Value::Int(*v),
            raw_value::Value::DoubleValue(v) => vocab::Value::Double(*v),
            raw_value::Value::StringValue(s) => vocab::Value::Text(s.as_bytes()),
            raw_value::Value::BytesValue(b) => vocab::Value::Bytes(b),
        })
    }
}

/// Maps every raw value of `e` through `profile` (by id or name) and writes `telemetry` and
/// `alarms`. For protocols whose values carry no width of their own; `extra` adds facts that
/// are not raw values (alarms a packet type means, say) before the mapper finishes.
pub fn map_raw(e: &mut TelemetryEvent, profile: &Profile, extra: impl FnOnce(&mut Mapper<'_>)) {
    let mut m = Mapper::new(profile);
    for r in &e.raw {
        let Some(v) = r.as_value() else { continue };
        match r.id {
            Some(id) => m.id(id, v),
            None => m.name(&r.name, v),
        }
    }
    extra(&mut m);
    m.finish(e);
}

/// Attribute constructors, so protocol code reads `attr::uint(5)`.
pub mod attr {
    use super::*;

    pub fn int(v: i64) -> AttributeValue {
        AttributeValue {
            value: Some(Value::IntValue(v)),
        }
    }
    pub fn uint(v: u64) -> AttributeValue {
        AttributeValue {
            value: Some(Value::UintValue(v)),
        }
    }
    pub fn double(v: f64) -> AttributeValue {
        AttributeValue {
            value: Some(Value::DoubleValue(v)),
        }
    }
    pub fn string(v: impl Into<String>) -> AttributeValue {
        AttributeValue {
            value: Some(Value::StringValue(v.into())),
        }
    }
    pub fn boolean(v: bool) -> AttributeValue {
        AttributeValue {
            value: Some(Value::BoolValue(v)),
        }
    }
    pub fn bytes(v: impl Into<Vec<u8>>) -> AttributeValue {
        AttributeValue {
            value: Some(Value::BytesValue(v.into())),
        }
    }
}

impl TelemetryEvent {
    /// Sets one attribute.
    pub fn set(&mut self, key: impl Into<String>, value: AttributeValue) {
        self.attributes.insert(key.into(), value);
    }

    /// Reads an attribute's value.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key).and_then(|a| a.value.as_ref())
    }

    /// The first raw value of that name.
    pub fn raw_named(&self, name: &str) -> Option<&raw_value::Value> {
        self.raw
            .iter()
            .find(|r| r.id.is_none() && r.name == name)
            .and_then(|r| r.value.as_ref())
    }

    /// The first raw value of that numeric id.
    pub fn raw_id(&self, id: u32) -> Option<&raw_value::Value> {
        self.raw
            .iter()
            .find(|r| r.id == Some(id))
            .and_then(|r| r.value.as_ref())
    }

    /// The normalized values (empty when none were mapped).
    pub fn telemetry(&self) -> &crate::proto::Telemetry {
        static EMPTY: std::sync::OnceLock<crate::proto::Telemetry> = std::sync::OnceLock::new();
        self.telemetry
            .as_deref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    /// Whether the record raised `alarm`.
    pub fn has_alarm(&self, alarm: crate::proto::Alarm) -> bool {
        self.alarms.contains(&(alarm as i32))
    }
}

/// The connection context the session layer stamps on every event of a frame before
/// publishing it (one place for the session and the benchmarks that measure it).
pub struct Stamp<'a> {
    pub imei: &'a str,
    pub protocol: crate::proto::Protocol,
    pub transport: crate::proto::Transport,
    pub received_at: Timestamp,
    pub peer: &'a str,
    pub gateway: &'a str,
}

impl Stamp<'_> {
    /// Stamps every event of a frame whose content digest is `digest`; an event that already
    /// has an id (lifecycle events) keeps it.
    pub fn apply(&self, events: &mut [TelemetryEvent], digest: u128) {
        for (i, e) in events.iter_mut().enumerate() {
            if e.event_id.is_empty() {
                e.event_id = event_id(self.imei, digest, i);
            }
            self.imei.clone_into(&mut e.imei);
            e.protocol = self.protocol as i32;
            e.transport = self.transport as i32;
            e.received_at = Some(self.received_at);
            self.peer.clone_into(&mut e.peer);
            self.gateway.clone_into(&mut e.gateway);
        }
    }
}

/// A protobuf timestamp from a system time (times before 1970 are clamped to the epoch).
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// A protobuf timestamp from milliseconds since the epoch.
/// The time a timestamp stands for, if it is after the epoch and well-formed.
pub fn system_time(t: &Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

pub fn timestamp_millis(ms: u64) -> Timestamp {
    timestamp(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A protobuf timestamp from seconds since the epoch.
pub fn timestamp_secs(secs: i64) -> Timestamp {
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

/// The deterministic event id: `<imei>-<digest as 32 hex digits>-<index>`.
///
/// Built once per published record, so written by hand: `format!` with a padded 128-bit hex
/// argument cost more than the rest of the id put together.
pub fn event_id(imei: &str, digest: u128, index: usize) -> String {
    // The 32 hex digits go through a stack buffer, two digits per byte from a table: one copy
    // into the string instead of 32 `push` calls or 32 shifts of a u128.
    let mut hex = [0u8; 34];
    hex[0] = b'-';
    for (pair, byte) in hex[1..33].chunks_exact_mut(2).zip(digest.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    hex[33] = b'-';
    let mut id = String::with_capacity(imei.len() + hex.len() + 20);
    id.push_str(imei);
    id.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    push_decimal(&mut id, index as u64);
    id
}

/// Lower-case hex digits of every byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xF]];
        i += 1;
    }
    t
};

/// Appends `n` in decimal, without `format!` (hot paths: event ids, `io<ID>` keys).
pub fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_and_distinct() {
        assert_eq!(
            event_id("356307042441013", 0xabc, 2),
            "356307042441013-00000000000000000000000000000abc-2"
        );
        assert_ne!(event_id("1", 1, 0), event_id("1", 1, 1));
    }

    #[test]
    fn event_ids_match_the_documented_format() {
        for (imei, digest, index) in [
            ("356307042441013", 0u128, 0usize),
            ("1", u128::MAX, usize::MAX),
            ("", 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, 10),
            ("864717003664467", 1 << 127, 254),
        ] {
            assert_eq!(
                event_id(imei, digest, index),
                format!("{imei}-{digest:032x}-{index}")
            );
        }
    }

    #[test]
    fn timestamps() {
        let t = timestamp_millis(1_700_000_000_123);
        assert_eq!(t.seconds, 1_700_000_000);
        assert_eq!(t.nanos, 123_000_000);
        assert_eq!(timestamp(UNIX_EPOCH - Duration::from_secs(5)).seconds, 0);
    }
}
