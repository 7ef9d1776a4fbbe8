//! Wialon Retranslator onto the vocabulary: the event each packet becomes and where every
//! normalized field comes from.
//!
//! A Retranslator packet is a message Wialon already decoded: its blocks are the unit's
//! parameters under Wialon's own names, the same names a Wialon IPS device sends (Wialon
//! stores IPS parameters as they come) plus Wialon's names for its own fields
//! (`avl_inputs`, `avl_outputs`, `avl_driver`, ...). So the built-in profile **is the Wialon IPS
//! profile** (`crate::protocol::wialon::mapping`, taken from there, not copied) with the
//! Retranslator's own names added below; a rule changed for Wialon IPS changes here too.
//!
//! # Raw values
//!
//! | raw name | value | from |
//! |---|---|---|
//! | `msg_flags` | uint | the packet's flags field (position, inputs, outputs, alarm, driver id bits) |
//! | every block but the position, under its own name | text → string (bytes when not UTF-8), binary → bytes, i32 / i64 → int, double → double, other data types → bytes | the packet's blocks, in order |
//! | `posinfo` | bytes (the block's 29 bytes) | only when its coordinates are no location (both zero, out of range, not finite); otherwise they are the event's `position` |
//!
//! Not kept: a block's "hidden" byte (whether Wialon's UI shows the parameter) and the block
//! type (always `0x0BBB`): presentation and framing, not values.
//!
//! # Normalized values: the built-in profile `wialon_retranslator`
//!
//! Every rule of the Wialon IPS profile `wialon` (see its table: `pwr_ext`, `pwr_int`, `ign`,
//! `acc`, `adc1`…, `in1`…, `temp1`…, `avl_driver`, `sos`, `hdop`, …), and:
//!
//! | raw name | field / alarm | why (source) |
//! |---|---|---|
//! | `avl_inputs`, `avl_outputs` | `digital_inputs`, `digital_outputs` (whole masks, the i32's 32 bits) | Retranslator spec: "avl_inputs — digital inputs", "avl_outputs — digital outputs"; flespi `din` / `dout` |
//! | `msg_flags.alarm` (bit 4, `0x10`) | `ALARM_GENERAL` | spec: "0x10 alarm bit"; flespi `alarm.event`; the bit says no more than "alarm" |
//!
//! Operators override any of them per unit in the profile file
//! (`[profiles.wialon_retranslator.names.<raw name>]`); an override of the Wialon IPS profile
//! `wialon` does not reach this profile.
//!
//! Deliberately not mapped, as for Wialon IPS: `gsm` (no one scale), `mileage`, `odometer`
//! (km or m), `can1`… (bus values of unknown meaning). Cell ids (`mcc`, `mnc`, `lac`,
//! `cell_id`, with one suffix) become `cell_towers` as for Wialon IPS, and names are looked
//! up as there: exactly, then lower-cased; text `true`/`false` is a flag.
//!
//! # Events
//!
//! One event per packet: POSITION when `posinfo` has a location (`valid` when it says it used
//! satellites; speed km/h, course degrees, altitude metres as sent), LBS with cell towers
//! only, STATUS without either, ALARM
//! when the alarm bit (or a rule) raised an alarm. `device_time` is the packet's time.
//! A packet that names its unit but cannot be read is one UNKNOWN event with the packet's
//! bytes as raw `packet` and the attribute `decode_error`.

use std::borrow::Cow;

use crate::event::{attr, raw, timestamp_secs};
use crate::proto::{Alarm, EventKind, Position, Protocol, RawValue, TelemetryEvent};
use crate::protocol::wialon::mapping as ips;
use crate::vocab::{Field, Key, Profile, Rule};

use super::packet::{self, Block, Packet, PosInfo, Value};

/// The built-in profile's name.
pub const PROFILE: &str = "wialon_retranslator";

/// Raw names that are not block names.
pub mod names {
    /// The packet's flags field.
    pub const MSG_FLAGS: &str = "msg_flags";
    /// A malformed packet, as it came.
    pub const PACKET: &str = "packet";
    pub const AVL_INPUTS: &str = "avl_inputs";
    pub const AVL_OUTPUTS: &str = "avl_outputs";
}

fn name(n: &'static str) -> Key {
    Key::Name(Cow::Borrowed(n))
}

/// The Retranslator's own names (the Wialon IPS rules come first, see the module doc).
fn own_rules() -> Vec<(Key, Rule)> {
    vec![
        // i32 on the wire: take its 32 bits, so input 32 (the sign bit) is an input too.
        (
            name(names::AVL_INPUTS),
            Rule::field(Field::DigitalInputs).bits(0, 32),
        ),
        (
            name(names::AVL_OUTPUTS),
            Rule::field(Field::DigitalOutputs).bits(0, 32),
        ),
        (
            name("msg_flags.alarm"),
            Rule::alarm(Alarm::General).bit(packet::flag::ALARM.trailing_zeros() as u8),
        ),
    ]
}

/// The built-in profile: Wialon IPS's rules and the Retranslator's own names.
fn retranslator() -> Profile {
    let ips_rules: Vec<(Key, Rule)> = ips::profiles()
        .into_iter()
        .find(|p| p.name == ips::PROFILE)
        .map(|p| p.rules().to_vec())
        .unwrap_or_default();
    Profile::new(
        PROFILE,
        Protocol::WialonRetranslator,
        ips_rules.into_iter().chain(own_rules()),
    )
}

/// The built-in profiles; `wialon_retranslator` is the default.
pub fn profiles() -> Vec<Profile> {
    vec![retranslator()]
}

fn event(kind: EventKind) -> TelemetryEvent {
    TelemetryEvent {
        protocol: Protocol::WialonRetranslator as i32,
        kind: kind as i32,
        ..Default::default()
    }
}

/// A block's value, typed as it came.
fn block_raw(b: &Block<'_>) -> RawValue {
    match b.value {
        Value::Text(t) => raw::text(b.name, t),
        Value::Binary(v) | Value::Other { bytes: v, .. } => raw::bytes(b.name, v),
        Value::Int(v) => raw::int(b.name, v.into()),
        Value::Double(v) => raw::double(b.name, v),
        Value::Long(v) => raw::int(b.name, v),
        Value::Position(p) => {
            let mut bytes = Vec::with_capacity(packet::POSINFO_LEN);
            p.write(&mut bytes);
            raw::bytes(b.name, bytes)
        }
    }
}

/// A location, when `posinfo` holds one: finite coordinates in range, not both zero (what
/// trackers send without a fix).
pub fn location(p: &PosInfo) -> Option<Position> {
    let located = p.latitude.is_finite()
        && p.longitude.is_finite()
        && p.latitude.abs() <= 90.0
        && p.longitude.abs() <= 180.0
        && (p.latitude != 0.0 || p.longitude != 0.0);
    located.then(|| Position {
        latitude: p.latitude,
        longitude: p.longitude,
        altitude: p.altitude.is_finite().then_some(p.altitude),
        speed: Some(p.speed.into()),
        course: Some(p.course.into()),
        satellites: Some(p.satellites.into()),
        // The spec has no validity flag: a location is a fix unless it used no satellites
        // (as for Wialon IPS records).
        valid: p.satellites > 0,
        ..Default::default()
    })
}

/// The event of one packet, mapped through `profile`.
pub fn to_event(p: &Packet<'_>, profile: &Profile) -> TelemetryEvent {
    let mut position = None;
    let mut values = Vec::with_capacity(p.blocks.len() + 1);
    values.push(raw::uint(names::MSG_FLAGS, p.flags.into()));
    for b in &p.blocks {
        if let (Value::Position(pos), None) = (&b.value, &position) {
            position = location(pos);
            if position.is_some() {
                continue;
            }
        }
        values.push(block_raw(b));
    }
    // The blocks carry Wialon IPS's parameters: the same cell towers, the same name lookup
    // (exact, then lower-cased; text `true`/`false` as flags).
    let cells = ips::cell_towers(&values);
    let kind = if position.is_some() {
        EventKind::Position
    } else if !cells.is_empty() {
        EventKind::Lbs
    } else {
        EventKind::Status
    };
    let mut e = event(kind);
    e.device_time = Some(timestamp_secs(p.time.into()));
    e.position = position;
    e.raw = values;
    e.cell_towers = cells;
    ips::map(&mut e, profile, 0);
    e
}

/// A packet that names its unit but cannot be read: published as it came (nothing a
/// Wialon server sent is dropped), with the reason.
pub fn unknown_event(bytes: &[u8], error: &str) -> TelemetryEvent {
    let mut e = event(EventKind::Unknown);
    e.raw.push(raw::bytes(names::PACKET, bytes));
    e.set("decode_error", attr::string(error));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raw_value::Value as RawV;

    fn pos(lat: f64, lon: f64, sats: u8) -> PosInfo {
        PosInfo {
            longitude: lon,
            latitude: lat,
            altitude: 151.5,
            speed: 54,
            course: 326,
            satellites: sats,
        }
    }

    fn block<'a>(name: &'a str, value: Value<'a>) -> Block<'a> {
        Block {
            hidden: 0,
            name,
            value,
        }
    }

    fn packet<'a>(flags: u32, blocks: Vec<Block<'a>>) -> Packet<'a> {
        Packet {
            unit: b"353976013445485",
            time: 1_259_076_464,
            flags,
            blocks,
        }
    }

    fn p() -> Profile {
        retranslator()
    }

    #[test]
    fn the_profile_is_the_wialon_ips_profile_plus_the_retranslator_names() {
        let ips = ips::profiles().remove(0);
        let mine = p();
        assert_eq!(mine.name, PROFILE);
        assert_eq!(mine.protocol, Protocol::WialonRetranslator);
        for (k, r) in ips.rules() {
            let Key::Name(n) = k else { continue };
            assert_eq!(mine.by_name(n), Some(r), "IPS rule {n} is shared");
        }
        assert_eq!(mine.rules().len(), ips.rules().len() + own_rules().len());
        assert!(mine.by_name("avl_inputs").is_some() && ips.by_name("avl_inputs").is_none());
    }

    #[test]
    fn wialon_names_map_onto_the_vocabulary_and_raw_keeps_every_block_typed() {
        let e = to_event(
            &packet(
                packet::flag::POSITION | packet::flag::INPUTS | packet::flag::OUTPUTS,
                vec![
                    block("posinfo", Value::Position(pos(55.73, 49.19, 11))),
                    block("pwr_ext", Value::Double(27.593)),
                    block("pwr_int", Value::Double(4.1)),
                    block("avl_inputs", Value::Int(0b101)),
                    block("avl_outputs", Value::Int(2)),
                    block("ign", Value::Int(1)),
                    block("adc2", Value::Double(3.25)),
                    block("avl_driver", Value::Text(b"A1B2C3")),
                    block("temp1", Value::Long(-7)),
                    block("gsm", Value::Int(4)),
                    block("can1", Value::Binary(&[1, 2, 3])),
                    block(
                        "odd",
                        Value::Other {
                            data_type: 9,
                            bytes: &[7],
                        },
                    ),
                ],
            ),
            &p(),
        );
        assert_eq!(e.kind, EventKind::Position as i32);
        assert_eq!(e.protocol, Protocol::WialonRetranslator as i32);
        assert_eq!(e.device_time.unwrap().seconds, 1_259_076_464);
        let t = e.telemetry();
        assert_eq!(t.external_power_volts, Some(27.593));
        assert_eq!(t.battery_volts, Some(4.1));
        assert_eq!(t.digital_inputs, Some(0b101));
        assert_eq!(t.digital_outputs, Some(2));
        assert_eq!(t.ignition, Some(true));
        assert_eq!(t.analog_inputs_volts.get(&2), Some(&3.25));
        assert_eq!(t.driver_id.as_deref(), Some("A1B2C3"));
        assert_eq!(t.temperatures_celsius.get(&1), Some(&-7.0));
        assert_eq!(t.gsm_signal_percent, None, "gsm has no one scale");
        assert!(e.alarms.is_empty());
        let names: Vec<&str> = e.raw.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "msg_flags",
                "pwr_ext",
                "pwr_int",
                "avl_inputs",
                "avl_outputs",
                "ign",
                "adc2",
                "avl_driver",
                "temp1",
                "gsm",
                "can1",
                "odd"
            ]
        );
        assert_eq!(e.raw_named("msg_flags"), Some(&RawV::UintValue(7)));
        assert_eq!(e.raw_named("avl_inputs"), Some(&RawV::IntValue(5)));
        assert_eq!(e.raw_named("pwr_ext"), Some(&RawV::DoubleValue(27.593)));
        assert_eq!(e.raw_named("temp1"), Some(&RawV::IntValue(-7)));
        assert_eq!(
            e.raw_named("avl_driver"),
            Some(&RawV::StringValue("A1B2C3".into()))
        );
        assert_eq!(e.raw_named("can1"), Some(&RawV::BytesValue(vec![1, 2, 3])));
        assert_eq!(e.raw_named("odd"), Some(&RawV::BytesValue(vec![7])));
        let p = e.position.unwrap();
        assert_eq!((p.latitude, p.longitude), (55.73, 49.19));
        assert_eq!(
            (p.altitude, p.speed, p.course, p.satellites, p.valid),
            (Some(151.5), Some(54.0), Some(326.0), Some(11), true)
        );
        assert!(e.attributes.is_empty());
    }

    #[test]
    fn the_alarm_bit_raises_a_general_alarm_and_other_bits_do_not() {
        let e = to_event(
            &packet(
                packet::flag::ALARM | packet::flag::POSITION,
                vec![block("posinfo", Value::Position(pos(1.0, 2.0, 5)))],
            ),
            &p(),
        );
        assert_eq!(e.alarms, vec![Alarm::General as i32]);
        assert_eq!(e.kind, EventKind::Alarm as i32);
        assert!(e.position.is_some(), "the alarm keeps its position");
        let e = to_event(
            &packet(
                !packet::flag::ALARM,
                vec![block("posinfo", Value::Position(pos(1.0, 2.0, 5)))],
            ),
            &p(),
        );
        assert!(e.alarms.is_empty());
        assert_eq!(e.kind, EventKind::Position as i32);
        // Wialon IPS's `sos` parameter raises SOS here too.
        let e = to_event(&packet(0, vec![block("sos", Value::Int(1))]), &p());
        assert_eq!(e.alarms, vec![Alarm::Sos as i32]);
    }

    #[test]
    fn input_32_is_the_sign_bit_of_the_i32() {
        let e = to_event(
            &packet(0, vec![block("avl_inputs", Value::Int(i32::MIN | 1))]),
            &p(),
        );
        assert_eq!(e.telemetry().digital_inputs, Some(0x8000_0001));
        assert_eq!(
            e.raw_named("avl_inputs"),
            Some(&RawV::IntValue(-2147483647))
        );
    }

    #[test]
    fn no_location_is_status_with_posinfo_kept_raw() {
        for (lat, lon) in [(0.0, 0.0), (91.0, 10.0), (10.0, -180.5), (f64::NAN, 1.0)] {
            let pi = pos(lat, lon, 7);
            let e = to_event(
                &packet(1, vec![block("posinfo", Value::Position(pi))]),
                &p(),
            );
            assert_eq!(e.kind, EventKind::Status as i32, "{lat},{lon}");
            assert!(e.position.is_none());
            let Some(RawV::BytesValue(b)) = e.raw_named("posinfo") else {
                panic!("posinfo bytes kept");
            };
            assert_eq!(b.len(), packet::POSINFO_LEN);
            assert_eq!(b[..8], lon.to_le_bytes());
            assert_eq!(b[8..16], lat.to_le_bytes());
            assert_eq!(b[24..], [0, 54, 1, 70, 7]);
        }
        // No posinfo at all.
        let e = to_event(
            &packet(0, vec![block("pwr_ext", Value::Double(12.0))]),
            &p(),
        );
        assert_eq!(e.kind, EventKind::Status as i32);
        // No satellites: a location, not a fix; a NaN altitude is no altitude.
        let mut pi = pos(-33.9, 18.4, 0);
        pi.altitude = f64::NAN;
        let e = to_event(
            &packet(1, vec![block("posinfo", Value::Position(pi))]),
            &p(),
        );
        let p = e.position.unwrap();
        assert!(!p.valid && p.altitude.is_none());
    }

    #[test]
    fn a_second_posinfo_stays_raw() {
        let e = to_event(
            &packet(
                1,
                vec![
                    block("posinfo", Value::Position(pos(10.0, 20.0, 4))),
                    block("posinfo", Value::Position(pos(11.0, 21.0, 4))),
                ],
            ),
            &p(),
        );
        assert_eq!(e.position.unwrap().latitude, 10.0);
        assert_eq!(e.raw.len(), 2);
        assert!(matches!(e.raw_named("posinfo"), Some(RawV::BytesValue(b)) if b.len() == 29));
    }

    #[test]
    fn text_that_is_not_utf8_is_kept_as_bytes() {
        let e = to_event(
            &packet(0, vec![block("drv", Value::Text(b"\xcf\xf0"))]),
            &p(),
        );
        assert_eq!(
            e.raw_named("drv"),
            Some(&RawV::BytesValue(vec![0xcf, 0xf0]))
        );
    }

    #[test]
    fn operators_override_by_raw_name() {
        let mut prof = p();
        prof.extend([(
            Key::Name("gsm".into()),
            Rule::field(Field::GsmSignalPercent).scale(20.0),
        )]);
        let e = to_event(&packet(0, vec![block("gsm", Value::Int(4))]), &prof);
        assert_eq!(e.telemetry().gsm_signal_percent, Some(80.0));
    }

    #[test]
    fn an_unreadable_packet_is_published_as_it_came() {
        let e = unknown_event(&[1, 2, 3], "block 0: type 0x0bbc, not 0x0bbb");
        assert_eq!(e.kind, EventKind::Unknown as i32);
        assert_eq!(
            e.raw_named("packet"),
            Some(&RawV::BytesValue(vec![1, 2, 3]))
        );
        assert!(e.attr("decode_error").is_some());
        assert!(e.telemetry.is_none() && e.position.is_none());
    }
}
