//! Teltonika records onto the vocabulary: where every normalized field of a Teltonika device
//! comes from.
//!
//! An AVL record carries its GNSS element (position, speed, satellites) and IO elements keyed
//! by numeric id. Every IO element is kept in `raw` by its id, exactly as sent (unsigned, or
//! bytes for Codec 8E's variable-length values), together with the record's `priority`,
//! `event_io` and (Codec 16) `generation_type`. What an id *means* depends on the device
//! family, so the mapping is a device profile:
//!
//! - `fmb` (default): FMB/FMC/FMM/FMU/FMT/FMP/MTB/MSP, Teltonika's FMB AVL ID list;
//! - `fm6xx`: the FM6xx/FM5xx/FM4xx generation, where only the ids both families share are
//!   mapped (analog inputs, ICCID, OBD and the alarm IOs mean other things there) plus the
//!   tachograph driver card in ids 195 + 196.
//!
//! Operators select a profile per IMEI and override ids in the profile file
//! (`vocab::profiles`). A record of panic priority raises the profile's `panic_alarm`
//! (default SOS: panic priority is what Teltonika devices give their SOS input) unless one of
//! its IO elements raised a more specific alarm.

use crate::event::{raw, timestamp_millis};
use crate::proto::{Alarm, EventKind, Position, Protocol, RawValue, TelemetryEvent};
use crate::vocab::{Field, Format, Key, Mapper, Profile, Rule, Target, Value};

use super::avl::{IoValue, Record};

/// Record priority 2.
const PRIORITY_PANIC: u8 = 2;

/// The rules both families share (Traccar applies these to every Teltonika model).
fn common() -> Vec<(Key, Rule)> {
    use Field as F;
    let id = Key::Id;
    vec![
        (id(1), Rule::input(1)),
        (id(2), Rule::input(2)),
        (id(3), Rule::input(3)),
        (id(4), Rule::input(4)),
        (id(16), Rule::field(F::OdometerMeters)),
        // GSM signal 0–5.
        (id(21), Rule::field(F::GsmSignalPercent).scale(20.0)),
        (id(66), Rule::field(F::ExternalPowerVolts).scale(0.001)),
        (id(67), Rule::field(F::BatteryVolts).scale(0.001)),
        // iButton, 8 bytes sent least significant first; 0 = no key.
        (
            id(78),
            Rule::field(F::DriverId)
                .format(Format::HexLe)
                .zero_is_absent(),
        ),
        (id(179), Rule::output(1)),
        (id(180), Rule::output(2)),
        (id(181), Rule::field(F::Pdop).scale(0.1)),
        (id(182), Rule::field(F::Hdop).scale(0.1)),
        (id(199), Rule::field(F::TripOdometerMeters)),
        (id(236), Rule::alarm(Alarm::General)),
        (id(239), Rule::field(F::Ignition)),
        (id(240), Rule::field(F::Motion)),
        (id(241), Rule::field(F::GsmOperator)),
        // Green driving: 1 acceleration, 2 braking, 3 cornering.
        (
            id(253),
            Rule::alarm_codes(&[
                (1, Alarm::HarshAcceleration),
                (2, Alarm::HarshBraking),
                (3, Alarm::HarshCornering),
            ]),
        ),
    ]
}

/// FMB family (FMB AVL ID list, firmware 03.2x).
fn fmb() -> Profile {
    use Field as F;
    let id = Key::Id;
    let temp = |n: u32| Rule::indexed(F::TemperaturesCelsius, n).scale(0.1).signed();
    let mut rules = common();
    rules.extend([
        (id(9), Rule::indexed(F::AnalogInputsVolts, 1).scale(0.001)),
        (id(10), Rule::indexed(F::AnalogInputsVolts, 2).scale(0.001)),
        // ICCID in two 8-byte halves (decimal digits each).
        (
            id(11),
            Rule::new(Target::TextPart {
                field: F::Iccid,
                part: 0,
            }),
        ),
        (
            id(14),
            Rule::new(Target::TextPart {
                field: F::Iccid,
                part: 1,
            }),
        ),
        (id(12), Rule::field(F::FuelUsedLiters).scale(0.001)),
        (id(32), Rule::field(F::CoolantTemperatureCelsius).signed()),
        (id(72), temp(1)),
        (id(73), temp(2)),
        (id(74), temp(3)),
        (id(75), temp(4)),
        (id(80), Rule::field(F::DeviceMode)),
        (id(81), Rule::field(F::ObdSpeedKmh)),
        (id(82), Rule::field(F::ThrottlePercent)),
        (id(83), Rule::field(F::FuelUsedLiters).scale(0.1)),
        (id(84), Rule::field(F::FuelLiters).scale(0.1)),
        (id(85), Rule::field(F::Rpm)),
        (id(87), Rule::field(F::ObdOdometerMeters)),
        (id(89), Rule::field(F::FuelLevelPercent)),
        (id(110), Rule::field(F::FuelRateLitersPerHour).scale(0.1)),
        (id(113), Rule::field(F::BatteryPercent)),
        (
            id(115),
            Rule::field(F::EngineTemperatureCelsius).scale(0.1).signed(),
        ),
        // Auto geofence: 1 entered, 0 left; only meaningful in the record it triggered.
        (
            id(175),
            Rule::alarm_codes(&[(0, Alarm::GeofenceExit), (1, Alarm::GeofenceEnter)]).event_only(),
        ),
        (id(246), Rule::alarm(Alarm::Tow)),
        (id(247), Rule::alarm(Alarm::Accident)),
        (id(249), Rule::alarm(Alarm::Jamming)),
        (id(251), Rule::alarm(Alarm::Idle)),
        (id(252), Rule::alarm(Alarm::PowerCut)),
        (id(256), Rule::field(F::Vin).format(Format::Ascii)),
        (id(380), Rule::output(3)),
        (id(662), Rule::field(F::DoorOpen)),
    ]);
    Profile::new("fmb", Protocol::Teltonika, rules).with_panic_alarm(Some(Alarm::Sos))
}

/// FM6xx (and older FM) generation.
fn fm6xx() -> Profile {
    use Field as F;
    let id = Key::Id;
    let temp = |n: u32| Rule::indexed(F::TemperaturesCelsius, n).scale(0.1).signed();
    let mut rules = common();
    rules.extend([
        (id(72), temp(1)),
        (id(73), temp(2)),
        (id(74), temp(3)),
        // Tachograph driver card number, 16 characters in two 8-byte halves.
        (
            id(195),
            Rule::new(Target::TextPart {
                field: F::DriverId,
                part: 0,
            })
            .format(Format::Ascii),
        ),
        (
            id(196),
            Rule::new(Target::TextPart {
                field: F::DriverId,
                part: 1,
            })
            .format(Format::Ascii),
        ),
    ]);
    Profile::new("fm6xx", Protocol::Teltonika, rules).with_panic_alarm(Some(Alarm::Sos))
}

/// The built-in profiles; `fmb` is the default.
pub fn profiles() -> Vec<Profile> {
    vec![fmb(), fm6xx()]
}

/// One AVL record as an event: the GNSS element as the position (none when the device sent
/// zero coordinates: no fix since power-up), every IO element in `raw`, and the profile's
/// mapping in `telemetry` and `alarms`.
pub fn to_event(r: &Record, profile: &Profile) -> TelemetryEvent {
    let located = r.latitude != 0 || r.longitude != 0;
    let position = located.then(|| Position {
        latitude: f64::from(r.latitude) / 1e7,
        longitude: f64::from(r.longitude) / 1e7,
        altitude: Some(r.altitude.into()),
        speed: Some(r.speed.into()),
        course: Some(r.angle.into()),
        satellites: Some(r.satellites.into()),
        // Teltonika sends the last known coordinates with 0 satellites when the fix is lost.
        valid: r.satellites > 0,
        ..Default::default()
    });
    let mut raw_values: Vec<RawValue> = Vec::with_capacity(3 + r.io.len());
    raw_values.push(raw::uint("priority", r.priority.into()));
    raw_values.push(raw::uint("event_io", r.event_io.into()));
    if let Some(g) = r.generation_type {
        raw_values.push(raw::uint("generation_type", g.into()));
    }
    let mut m = Mapper::new(profile);
    m.triggered_by(r.event_io.into());
    for (id, v) in &r.io {
        let id = u32::from(*id);
        match v {
            IoValue::Bytes(b) => {
                m.id(id, Value::Bytes(b));
                raw_values.push(raw::id_bytes(id, b.clone()));
            }
            v => {
                let (n, width) = match *v {
                    IoValue::U8(n) => (u64::from(n), 1),
                    IoValue::U16(n) => (u64::from(n), 2),
                    IoValue::U32(n) => (u64::from(n), 4),
                    IoValue::U64(n) => (n, 8),
                    IoValue::Bytes(_) => unreachable!("matched above"),
                };
                m.id(id, Value::Uint(n, width));
                raw_values.push(raw::id_uint(id, n));
            }
        }
    }
    if r.priority == PRIORITY_PANIC && m.alarms().is_empty() {
        if let Some(a) = profile.panic_alarm {
            m.raise(a);
        }
    }
    let mut e = TelemetryEvent {
        protocol: Protocol::Teltonika as i32,
        kind: if located {
            EventKind::Position as i32
        } else {
            EventKind::Status as i32
        },
        device_time: Some(timestamp_millis(r.timestamp_ms)),
        position,
        raw: raw_values,
        ..Default::default()
    };
    m.finish(&mut e);
    e
}

/// A line a reader on the device's serial port sends through Codec 13 instead of a command
/// answer: `GTSL|<type>|<n>|<n>|<driver id>|...` (a driver identification). A STATUS event
/// with the text in `raw` (`serial_text`) and the driver id in `telemetry`; `None` for text
/// that is not such a line.
pub fn serial_line(text: &[u8]) -> Option<TelemetryEvent> {
    if !text.starts_with(b"GTSL|") {
        return None;
    }
    let driver = text
        .split(|&b| b == b'|')
        .nth(4)
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(d).into_owned());
    Some(TelemetryEvent {
        protocol: Protocol::Teltonika as i32,
        kind: EventKind::Status as i32,
        raw: vec![raw::uint("codec", 13), raw::text("serial_text", text)],
        telemetry: driver.map(|d| {
            Box::new(crate::proto::Telemetry {
                driver_id: Some(d),
                ..Default::default()
            })
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raw_value::Value as RawV;

    fn record(io: Vec<(u16, IoValue)>) -> Record {
        Record {
            timestamp_ms: 1_560_161_086_000,
            priority: 1,
            longitude: 253_910_000,
            latitude: 546_820_000,
            altitude: 110,
            angle: 270,
            satellites: 9,
            speed: 42,
            event_io: 239,
            generation_type: None,
            io,
        }
    }

    #[test]
    fn an_fmb_record_maps_onto_the_vocabulary_and_keeps_raw() {
        let r = record(vec![
            (239, IoValue::U8(1)),
            (240, IoValue::U8(0)),
            (21, IoValue::U8(4)),
            (1, IoValue::U8(1)),
            (66, IoValue::U16(12_345)),
            (67, IoValue::U16(4_012)),
            (182, IoValue::U16(7)),
            (72, IoValue::U32((-55i32) as u32)),
            (16, IoValue::U32(123_456)),
            (78, IoValue::U64(0x0807_0605_0403_0201)),
            (9999, IoValue::U8(3)),
        ]);
        let e = to_event(&r, &fmb());
        let p = e.position.as_ref().unwrap();
        assert!((p.latitude - 54.682).abs() < 1e-9 && (p.longitude - 25.391).abs() < 1e-9);
        assert_eq!((p.speed, p.hdop, p.valid), (Some(42.0), Some(0.7), true));
        let t = e.telemetry();
        assert_eq!(t.ignition, Some(true));
        assert_eq!(t.motion, Some(false));
        assert_eq!(t.gsm_signal_percent, Some(80.0));
        assert_eq!(t.digital_inputs, Some(1));
        assert!((t.external_power_volts.unwrap() - 12.345).abs() < 1e-9);
        assert!((t.battery_volts.unwrap() - 4.012).abs() < 1e-9);
        assert!((t.temperatures_celsius[&1] + 5.5).abs() < 1e-9);
        assert_eq!(t.odometer_meters, Some(123_456.0));
        assert_eq!(t.driver_id.as_deref(), Some("0102030405060708"));
        assert_eq!(e.kind, EventKind::Position as i32);
        // Raw: the record fields by name, every IO element by id, exactly as sent.
        assert_eq!(e.raw_named("priority"), Some(&RawV::UintValue(1)));
        assert_eq!(e.raw_named("event_io"), Some(&RawV::UintValue(239)));
        assert_eq!(e.raw_id(72), Some(&RawV::UintValue(0xFFFF_FFC9)));
        assert_eq!(e.raw_id(9999), Some(&RawV::UintValue(3)));
        assert_eq!(e.raw.len(), 2 + 11);
    }

    #[test]
    fn alarm_ios_and_panic_priority() {
        let mut r = record(vec![(246, IoValue::U8(1))]);
        let e = to_event(&r, &fmb());
        assert_eq!(e.alarms, vec![Alarm::Tow as i32]);
        assert_eq!(e.kind, EventKind::Alarm as i32);
        // Panic priority with a specific alarm: only the specific one.
        r.priority = PRIORITY_PANIC;
        assert_eq!(to_event(&r, &fmb()).alarms, vec![Alarm::Tow as i32]);
        // Panic priority alone: SOS.
        r.io.clear();
        assert_eq!(to_event(&r, &fmb()).alarms, vec![Alarm::Sos as i32]);
        // Not on the FM6xx: 246 means something else there.
        r.priority = 0;
        r.io = vec![(246, IoValue::U8(1))];
        assert!(to_event(&r, &fm6xx()).alarms.is_empty());
    }

    #[test]
    fn no_coordinates_is_a_status_record_and_lost_fix_is_not_valid() {
        let mut r = record(vec![]);
        r.latitude = 0;
        r.longitude = 0;
        r.satellites = 0;
        let e = to_event(&r, &fmb());
        assert_eq!(e.kind, EventKind::Status as i32);
        assert!(e.position.is_none());
        let mut r = record(vec![]);
        r.satellites = 0;
        let e = to_event(&r, &fmb());
        assert_eq!(e.kind, EventKind::Position as i32);
        assert!(!e.position.unwrap().valid);
    }

    #[test]
    fn fm6xx_driver_card_from_two_halves() {
        let half = |s: &[u8; 8]| IoValue::U64(u64::from_be_bytes(*s));
        let r = record(vec![(196, half(b"00000001")), (195, half(b"10000000"))]);
        let e = to_event(&r, &fm6xx());
        assert_eq!(e.telemetry().driver_id.as_deref(), Some("1000000000000001"));
        // The FMB reads 195/196 as nothing.
        assert_eq!(to_event(&r, &fmb()).telemetry, None);
    }

    #[test]
    fn a_gtsl_serial_line_is_a_driver_identification() {
        let e = serial_line(b"GTSL|6|1|0|12749884|1|\r\n").unwrap();
        assert_eq!(e.telemetry().driver_id.as_deref(), Some("12749884"));
        assert_eq!(e.kind, EventKind::Status as i32);
        assert!(serial_line(b"DOUT1:1").is_none());
    }

    #[test]
    fn geofence_only_in_its_own_record() {
        let mut r = record(vec![(175, IoValue::U8(0))]);
        assert!(to_event(&r, &fmb()).alarms.is_empty());
        r.event_io = 175;
        assert_eq!(
            to_event(&r, &fmb()).alarms,
            vec![Alarm::GeofenceExit as i32]
        );
    }
}
