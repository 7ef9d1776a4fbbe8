//! Meitrack values onto the vocabulary: the one place that says which normalized field or
//! alarm a Meitrack value feeds, and how records become events.
//!
//! # Raw names and ids
//!
//! - **Text reports (`AAA`, `AFF`) and `CCC` records** put their values in `raw` by name, as
//!   sent: lower snake case after the field's name in Meitrack's documents (`event_code`,
//!   `gsm_signal`, `mileage`, `run_time`, `io_status`, `ad1`…`ad5`, `base_station`, ...). A
//!   number with a unit of its own is named with it (`battery_centivolts`). One name, one
//!   layout: the `AAA` volts form (`battery_voltage`) and the `CCC` centivolts are different
//!   names. [`name`] lists them all.
//! - **`CCE` parameters** are numbered: every one goes into `raw` under its id as sent (`0xFE69`
//!   is id 65129), 1/2/4-byte values as unsigned integers, variable ones as bytes; the record
//!   index and the remaining cache are named.
//! - The fix (coordinates, time, speed, course, altitude, satellites, HDOP) and the cells and
//!   Wi-Fi access points are typed (`position`, `device_time`, `cell_towers`,
//!   `wifi_access_points`) and, for text reports and `CCC`, not repeated in `raw` (a record
//!   without coordinates keeps its speed, course, ... in `raw`). `CCE` keeps every parameter
//!   in `raw`, the fix ones too, since they are parameters like any other there.
//! - **Derived values** (see `record`): the parts of compound values, fed to the rules by name
//!   but not published: `fuel_percent` (the `AAA` fuel field's two bytes), `temperature_<n>`
//!   (signed hundredths of a degree: `AAA` protocol 3 and later, `CCE` `0x2A`–`0x31`),
//!   `temperature_legacy_<n>` (degrees: older `AAA` firmware), `driver_card` (event 37's data),
//!   `battery_level_<k>` (`CCE` `0xFEA8`), `tag_name`, `tag_battery`, `tag_temperature` and
//!   `tag_humidity` (1/256, `CCE` `0xFE73`), `alarm_type`, `alarm_file` (`CCE` `0xFE31`).
//!
//! # Rules
//!
//! The mapping is data: a [`Profile`] of rules keyed by raw name or id (and the derived names),
//! which operators override or extend in the profile file like any other. The default profile
//! `meitrack` takes the current models' scales: hex analog readings (`ad1`…`ad5`) in hundredths
//! of a volt (T333, T355, T311, T322X, T366 and later). Older models report ADC counts; their
//! built-in profiles, assigned per device in the profile file, carry the scales Meitrack
//! documents:
//!
//! - `meitrack-mvt380` (MVT340, MVT380): `ad1`–`ad4` × 6/1024 V, `ad5` × 48/1024 V;
//! - `meitrack-t1` (T1, T3, MVT100, MVT600, MVT800, TC68, TC68S): `ad1`–`ad4` × 6.6/4096 V,
//!   `ad5` × 52.8/4096 V;
//! - `meitrack-mt90` (MT90): `ad4` × 6.6/4096 V (battery); its other readings stay in raw.
//!
//! ```toml
//! [[devices]]
//! profile = "meitrack-t1"
//! imeis = ["013949004569813"]
//! ```
//!
//! Event codes raise alarms as the reference server maps them (1 SOS, 17 low battery, 18 low
//! external power, 19 overspeed, 20/21 geofence enter/exit, 22 power restored, 23 power cut,
//! 36 tow, 44 jamming, 78 accident, 90/91 cornering, 129 braking, 130 acceleration, 135
//! fatigue). `io_status` is inputs (high byte) and outputs (low byte). No input is taken for
//! the ignition by default: which input is wired to it is the installation's (event 3 "input 3
//! active" is the ignition on the vehicle models' default wiring); an operator profile says so
//! where it holds:
//!
//! ```toml
//! [profiles.meitrack-vehicle]
//! extends = "meitrack"
//! [profiles.meitrack-vehicle.names."io_status.ignition"]
//! field = "ignition"
//! bits = [10, 1]   # input 3: bit 2 of the inputs byte
//! ```
//!
//! Values without a field in the vocabulary stay in raw: `run_time` (the device's running
//! time, not engine hours), `CCE` `0x47` (lock state), the BLE tag's values but its humidity,
//! `battery_level_2`/`_3`, the camera alarm's file name, `CCC`'s `status` word (its layout is
//! undocumented) and `geofence`.

use std::borrow::Cow;

use crate::event::timestamp_secs;
use crate::proto::{raw_value, Alarm, EventKind, File, Protocol, RawValue, TelemetryEvent};
use crate::vocab::{Field, Key, Mapper, Profile, Rule, Target, Value};

use super::record::{Record, V};

/// The default profile.
pub const PROFILE: &str = "meitrack";

/// Every raw name (and derived name) the Meitrack decoders write.
pub mod name {
    /// `AFF`: the serial before the report's fields.
    pub const SERIAL: &str = "serial";
    pub const EVENT_CODE: &str = "event_code";
    /// GSM signal, 0–31 (CSQ).
    pub const GSM_SIGNAL: &str = "gsm_signal";
    /// Metres.
    pub const MILEAGE: &str = "mileage";
    /// Seconds the device has been running.
    pub const RUN_TIME: &str = "run_time";
    /// `AAA`: `mcc|mnc|lac|ci` as sent.
    pub const BASE_STATION: &str = "base_station";
    /// `AAA`: inputs (high byte) and outputs (low byte).
    pub const IO_STATUS: &str = "io_status";
    /// `AAA`: the analog field when it fits neither form, as sent.
    pub const ANALOG: &str = "analog";
    /// `AAA`: the hex analog readings: AD1–AD3, AD4 the battery, AD5 the external supply.
    pub const AD1: &str = "ad1";
    pub const ADS: [&str; 5] = ["ad1", "ad2", "ad3", "ad4", "ad5"];
    /// `AAA`: the volts form of the analog field, in its order.
    pub const VOLTAGES: [&str; 5] = [
        "battery_voltage",
        "power_voltage",
        "rtc_voltage",
        "mcu_voltage",
        "gps_voltage",
    ];
    /// `AAA`'s optional fields, by position.
    pub const EVENT_DATA: &str = "event_data";
    pub const SENSOR: &str = "sensor";
    pub const PROTOCOL_VERSION: &str = "protocol_version";
    /// Four hex digits: integer percent, hundredths.
    pub const FUEL: &str = "fuel";
    /// `<index hex 2><value hex 4>|...` as sent.
    pub const TEMPERATURES: &str = "temperatures";
    pub const DATA_COUNT: &str = "data_count";
    pub const DATA_PREFIX: &str = "data_";
    /// Fields past the last numbered `data_<n>`, joined by commas.
    pub const DATA_REST: &str = "data_rest";
    /// Fix fields of a record without coordinates.
    pub const SPEED: &str = "speed";
    pub const COURSE: &str = "course";
    pub const ALTITUDE: &str = "altitude";
    pub const SATELLITES: &str = "satellites";
    pub const HDOP: &str = "hdop";
    pub const HDOP_TENTHS: &str = "hdop_tenths";
    /// `CCC`: the batch's layout version, the fix byte when it is neither 0 nor 1, the status
    /// word, the supplies in 0.01 V, the geofence word, bytes past the known layout.
    pub const CCC_VERSION: &str = "ccc_version";
    pub const FIX: &str = "fix";
    pub const STATUS: &str = "status";
    pub const BATTERY_CENTIVOLTS: &str = "battery_centivolts";
    pub const POWER_CENTIVOLTS: &str = "power_centivolts";
    pub const GEOFENCE: &str = "geofence";
    pub const EXTRA: &str = "extra";
    /// `CCC` and `CCE`: records still cached on the device.
    pub const REMAINING_CACHE: &str = "remaining_cache";
    /// `CCE`: the record's index, and bytes of a record its groups did not account for.
    pub const RECORD_INDEX: &str = "record_index";
    pub const TRAILING_BYTES: &str = "trailing_bytes";
    /// A `CCC` record of a layout this decoder does not know.
    pub const RECORD: &str = "record";
    /// Messages the gateway does not interpret (`AAC`), command answers: the command and the
    /// data, and the answer's flag.
    pub const COMMAND: &str = "command";
    pub const DATA: &str = "data";
    pub const FLAG: &str = "flag";
    /// Derived (see the module doc).
    pub const FUEL_PERCENT: &str = "fuel_percent";
    pub const DRIVER_CARD: &str = "driver_card";
    pub const TAG_NAME: &str = "tag_name";
    pub const TAG_BATTERY: &str = "tag_battery";
    pub const TAG_TEMPERATURE: &str = "tag_temperature";
    pub const TAG_HUMIDITY: &str = "tag_humidity";
    pub const ALARM_TYPE: &str = "alarm_type";
    pub const ALARM_FILE: &str = "alarm_file";

    /// `data_<n>`: the report's data fields after the count, from 1.
    pub fn data(n: usize) -> String {
        format!("{DATA_PREFIX}{n}")
    }

    /// Derived: sensor `n`, signed hundredths of a degree.
    pub fn temperature(n: u64) -> String {
        format!("temperature_{n}")
    }

    /// Derived: sensor `n`, degrees (older firmware's encoding).
    pub fn temperature_legacy(n: u64) -> String {
        format!("temperature_legacy_{n}")
    }

    /// Derived: battery `k` (1–3) charge, %.
    pub fn battery_level(k: u64) -> String {
        format!("battery_level_{k}")
    }
}

/// `CCE` parameter ids with a rule.
pub mod id {
    pub const EVENT: u32 = 0x01;
    pub const GSM_SIGNAL: u32 = 0x07;
    pub const MILEAGE: u32 = 0x0C;
    pub const OUTPUTS: u32 = 0x14;
    pub const INPUTS: u32 = 0x15;
    pub const AD1: u32 = 0x16;
    pub const BATTERY: u32 = 0x19;
    pub const POWER: u32 = 0x1A;
    pub const DRIVER_ID: u32 = 0x25;
    pub const EVENT_WORD: u32 = 0x40;
    pub const LOCK: u32 = 0x47;
    pub const OBD_SPEED: u32 = 0x91;
    pub const OBD_SPEED_2: u32 = 0x92;
    pub const THROTTLE: u32 = 0x97;
    pub const RPM: u32 = 0x99;
    pub const COOLANT: u32 = 0x9C;
    pub const FUEL_LEVEL: u32 = 0x9D;
    pub const FUEL_USED: u32 = 0xA0;
    pub const BATTERY_LEVEL: u32 = 0xFE69;
    pub const ENGINE_MINUTES: u32 = 0xFEF4;
}

/// Event codes that are alarms (the reference server's table).
pub const EVENTS: &[(u64, Alarm)] = &[
    (1, Alarm::Sos),
    (17, Alarm::LowBattery),
    (18, Alarm::LowPower),
    (19, Alarm::Overspeed),
    (20, Alarm::GeofenceEnter),
    (21, Alarm::GeofenceExit),
    (22, Alarm::PowerRestored),
    (23, Alarm::PowerCut),
    (36, Alarm::Tow),
    (44, Alarm::Jamming),
    (78, Alarm::Accident),
    (90, Alarm::HarshCornering),
    (91, Alarm::HarshCornering),
    (129, Alarm::HarshBraking),
    (130, Alarm::HarshAcceleration),
    (135, Alarm::FatigueDriving),
];

/// Temperature sensors a profile maps (the `CCE` parameters `0x2A`–`0x31`).
const SENSORS: u64 = 8;

fn key(name: &str) -> Key {
    Key::Name(Cow::Owned(name.to_string()))
}

fn labelled(raw: &str, label: &str) -> Key {
    Key::Name(Cow::Owned(format!("{raw}.{label}")))
}

/// The scales of the hex analog readings (`ad1`–`ad3`, `ad4` battery, `ad5` supply);
/// `None` leaves the reading unmapped.
struct Adc {
    inputs: Option<f64>,
    battery: Option<f64>,
    power: Option<f64>,
}

fn adc_rules(a: &Adc) -> Vec<(Key, Rule)> {
    use Field as F;
    let rule = |r: Rule, scale: Option<f64>| match scale {
        Some(s) => r.scale(s),
        None => Rule::new(Target::Ignore),
    };
    let mut rules = vec![
        (
            key(name::ADS[3]),
            rule(Rule::field(F::BatteryVolts), a.battery),
        ),
        (
            key(name::ADS[4]),
            rule(Rule::field(F::ExternalPowerVolts), a.power),
        ),
    ];
    for (i, n) in name::ADS[..3].iter().enumerate() {
        rules.push((
            key(n),
            rule(Rule::indexed(F::AnalogInputsVolts, i as u32 + 1), a.inputs),
        ));
    }
    rules
}

/// The rules every profile shares.
fn family() -> Vec<(Key, Rule)> {
    use name as n;
    use Field as F;
    let gsm = || {
        Rule::field(F::GsmSignalPercent)
            .valid(0.0, 31.0)
            .scale(100.0 / 31.0)
    };
    let mut rules = vec![
        (key(n::EVENT_CODE), Rule::alarm_codes(EVENTS)),
        (key(n::GSM_SIGNAL), gsm()),
        (key(n::MILEAGE), Rule::field(F::OdometerMeters)),
        (
            labelled(n::IO_STATUS, "inputs"),
            Rule::field(F::DigitalInputs).bits(8, 8),
        ),
        (
            labelled(n::IO_STATUS, "outputs"),
            Rule::field(F::DigitalOutputs).bits(0, 8),
        ),
        (key(n::VOLTAGES[0]), Rule::field(F::BatteryVolts)),
        (key(n::VOLTAGES[1]), Rule::field(F::ExternalPowerVolts)),
        (
            key(n::BATTERY_CENTIVOLTS),
            Rule::field(F::BatteryVolts).scale(0.01),
        ),
        (
            key(n::POWER_CENTIVOLTS),
            Rule::field(F::ExternalPowerVolts).scale(0.01),
        ),
        // Devices without a fuel sensor send `0000`: an empty tank is not what they mean.
        (
            key(n::FUEL_PERCENT),
            Rule::field(F::FuelLevelPercent)
                .valid(0.0, 100.0)
                .zero_is_absent(),
        ),
        (key(n::DRIVER_CARD), Rule::field(F::DriverId)),
        (
            key(&n::battery_level(1)),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            key(n::TAG_HUMIDITY),
            Rule::field(F::HumidityPercent)
                .valid(0.0, 25_600.0)
                .scale(1.0 / 256.0),
        ),
        (Key::Id(id::EVENT), Rule::alarm_codes(EVENTS)),
        (Key::Id(id::EVENT_WORD), Rule::alarm_codes(EVENTS)),
        (Key::Id(id::GSM_SIGNAL), gsm()),
        (Key::Id(id::MILEAGE), Rule::field(F::OdometerMeters)),
        (Key::Id(id::OUTPUTS), Rule::field(F::DigitalOutputs)),
        (Key::Id(id::INPUTS), Rule::field(F::DigitalInputs)),
        (
            Key::Id(id::BATTERY),
            Rule::field(F::BatteryVolts).scale(0.01),
        ),
        (
            Key::Id(id::POWER),
            Rule::field(F::ExternalPowerVolts).scale(0.01),
        ),
        (
            Key::Id(id::DRIVER_ID),
            Rule::field(F::DriverId).zero_is_absent(),
        ),
        (Key::Id(id::OBD_SPEED), Rule::field(F::ObdSpeedKmh)),
        (Key::Id(id::OBD_SPEED_2), Rule::field(F::ObdSpeedKmh)),
        (
            Key::Id(id::THROTTLE),
            Rule::field(F::ThrottlePercent).valid(0.0, 100.0),
        ),
        (Key::Id(id::RPM), Rule::field(F::Rpm)),
        (
            Key::Id(id::COOLANT),
            Rule::field(F::CoolantTemperatureCelsius),
        ),
        (
            Key::Id(id::FUEL_LEVEL),
            Rule::field(F::FuelLevelPercent).valid(0.0, 100.0),
        ),
        (
            Key::Id(id::FUEL_USED),
            Rule::field(F::FuelUsedLiters).scale(0.001),
        ),
        (
            Key::Id(id::BATTERY_LEVEL),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            Key::Id(id::ENGINE_MINUTES),
            Rule::field(F::EngineSeconds).scale(60.0),
        ),
    ];
    for i in 0..3u32 {
        rules.push((
            Key::Id(id::AD1 + i),
            Rule::indexed(F::AnalogInputsVolts, i + 1).scale(0.01),
        ));
    }
    for s in 1..=SENSORS {
        rules.push((
            key(&n::temperature(s)),
            Rule::indexed(F::TemperaturesCelsius, s as u32).scale(0.01),
        ));
        rules.push((
            key(&n::temperature_legacy(s)),
            Rule::indexed(F::TemperaturesCelsius, s as u32),
        ));
    }
    rules
}

fn profile(name: &str, adc: Adc) -> Profile {
    let mut rules = family();
    rules.extend(adc_rules(&adc));
    Profile::new(name, Protocol::Meitrack, rules)
}

/// The built-in profiles; `meitrack` is the default.
pub fn profiles() -> Vec<Profile> {
    vec![
        profile(
            PROFILE,
            Adc {
                inputs: Some(0.01),
                battery: Some(0.01),
                power: Some(0.01),
            },
        ),
        profile(
            "meitrack-mvt380",
            Adc {
                inputs: Some(6.0 / 1024.0),
                battery: Some(6.0 / 1024.0),
                power: Some(48.0 / 1024.0),
            },
        ),
        profile(
            "meitrack-t1",
            Adc {
                inputs: Some(6.6 / 4096.0),
                battery: Some(6.6 / 4096.0),
                power: Some(52.8 / 4096.0),
            },
        ),
        profile(
            "meitrack-mt90",
            Adc {
                inputs: None,
                battery: Some(6.6 / 4096.0),
                power: None,
            },
        ),
    ]
}

fn event(kind: EventKind) -> TelemetryEvent {
    TelemetryEvent {
        protocol: Protocol::Meitrack as i32,
        kind: kind as i32,
        ..Default::default()
    }
}

fn mapper_value(v: &V) -> Value<'_> {
    match v {
        V::Uint(n, w) => Value::Uint(*n, *w),
        V::Int(n) => Value::Int(*n),
        V::Double(d) => Value::Double(*d),
        V::Text(t) => Value::Text(t.as_bytes()),
        V::Bytes(b) => Value::Bytes(b),
    }
}

fn raw_value(key: &Key, v: V) -> RawValue {
    let (id, name) = match key {
        Key::Id(i) => (Some(*i), String::new()),
        Key::Name(n) => (None, n.to_string()),
    };
    let value = match v {
        V::Uint(n, _) => raw_value::Value::UintValue(n),
        V::Int(n) => raw_value::Value::IntValue(n),
        V::Double(d) => raw_value::Value::DoubleValue(d),
        V::Text(t) => raw_value::Value::StringValue(t),
        V::Bytes(b) => raw_value::Value::BytesValue(b),
    };
    RawValue {
        id,
        name,
        value: Some(value),
    }
}

/// A record: POSITION with a fix, STATUS without (ALARM when an alarm was raised).
pub fn record_event(rec: Record, profile: &Profile) -> TelemetryEvent {
    let kind = if rec.position.is_some() {
        EventKind::Position
    } else {
        EventKind::Status
    };
    let mut e = event(kind);
    e.device_time = rec.time.map(timestamp_secs);
    e.position = rec.position;
    e.cell_towers = rec.cells;
    e.wifi_access_points = rec.wifi;
    let mut m = Mapper::new(profile);
    for v in &rec.values {
        let value = mapper_value(&v.value);
        match &v.key {
            Key::Id(i) => m.id(*i, value),
            Key::Name(n) => m.name(n, value),
        }
    }
    m.finish(&mut e);
    e.raw = rec
        .values
        .into_iter()
        .filter(|v| v.raw)
        .map(|v| raw_value(&v.key, v.value))
        .collect();
    e
}

/// A message the gateway acknowledges but does not interpret (`AAC`), or a record of an
/// unknown layout: its values as they came.
pub fn unknown_event(values: Vec<(&'static str, V)>) -> TelemetryEvent {
    let mut e = event(EventKind::Unknown);
    e.raw = values
        .into_iter()
        .map(|(n, v)| raw_value(&Key::Name(Cow::Borrowed(n)), v))
        .collect();
    e
}

/// The device's answer to a command: `text` is `<command>,<data>` (the command it answers and
/// what it said), or `raw` `data` holds the bytes when they are not text.
pub fn answer_event(flag: u8, command: &str, data: &[u8]) -> TelemetryEvent {
    let mut e = event(EventKind::CommandResponse);
    e.raw.push(raw_value(
        &Key::Name(Cow::Borrowed(name::FLAG)),
        V::Uint(flag.into(), 1),
    ));
    e.raw.push(raw_value(
        &Key::Name(Cow::Borrowed(name::COMMAND)),
        V::Text(command.into()),
    ));
    match std::str::from_utf8(data) {
        Ok(t) => e.text = Some(answer_text(command, t)),
        Err(_) => e.raw.push(raw_value(
            &Key::Name(Cow::Borrowed(name::DATA)),
            V::Bytes(data.to_vec()),
        )),
    }
    e
}

/// `<command>,<data>` (the command alone when the answer has no data).
pub fn answer_text(command: &str, data: &str) -> String {
    if data.is_empty() {
        command.to_string()
    } else {
        format!("{command},{data}")
    }
}

/// The file type of the photos `D00` uploads.
pub const FILE_IMAGE: &str = "image";

/// A photo the device uploaded with `D00`.
pub fn file_event(file_name: String, data: Vec<u8>) -> TelemetryEvent {
    let mut e = event(EventKind::File);
    e.file = Some(File {
        name: file_name,
        r#type: FILE_IMAGE.to_string(),
        data,
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Position;

    fn default() -> Profile {
        profiles().remove(0)
    }

    fn rec(values: &[(&'static str, V)]) -> Record {
        let mut r = Record {
            position: Some(Position {
                latitude: 1.0,
                longitude: 2.0,
                valid: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        for (n, v) in values {
            r.named(*n, v.clone());
        }
        r
    }

    #[test]
    fn event_codes_raise_the_reference_alarms() {
        for (code, alarm) in EVENTS {
            let e = record_event(rec(&[("event_code", V::Uint(*code, 8))]), &default());
            assert_eq!(e.alarms, vec![*alarm as i32], "code {code}");
            assert_eq!(e.kind, EventKind::Alarm as i32);
        }
        let e = record_event(rec(&[("event_code", V::Uint(35, 8))]), &default());
        assert!(e.alarms.is_empty());
        assert_eq!(e.kind, EventKind::Position as i32);
        let mut r = Record::default();
        r.id(0x40, V::Uint(23, 2));
        let e = record_event(r, &default());
        assert!(e.has_alarm(Alarm::PowerCut));
        assert_eq!(e.kind, EventKind::Alarm as i32, "no fix, still an alarm");
    }

    #[test]
    fn supplies_signal_io_and_odometer() {
        let e = record_event(
            rec(&[
                ("gsm_signal", V::Uint(31, 8)),
                ("io_status", V::Uint(0x0803, 2)),
                ("ad4", V::Uint(0x191, 8)),
                ("ad5", V::Uint(0x573, 8)),
                ("ad2", V::Uint(250, 8)),
                ("mileage", V::Uint(1_988_259, 8)),
                ("run_time", V::Uint(525_882, 8)),
            ]),
            &default(),
        );
        let t = e.telemetry();
        assert_eq!(t.gsm_signal_percent, Some(100.0));
        assert_eq!((t.digital_inputs, t.digital_outputs), (Some(8), Some(3)));
        let close = |v: Option<f64>, w: f64| v.is_some_and(|v| (v - w).abs() < 1e-9);
        assert!(close(t.battery_volts, 4.01), "{:?}", t.battery_volts);
        assert!(close(t.external_power_volts, 13.95));
        assert!(close(t.analog_inputs_volts.get(&2).copied(), 2.5));
        assert_eq!(t.odometer_meters, Some(1_988_259.0));
        assert_eq!(t.engine_seconds, None, "run time is no engine time");
        // Out of the CSQ range: not known.
        let e = record_event(rec(&[("gsm_signal", V::Uint(99, 8))]), &default());
        assert_eq!(e.telemetry().gsm_signal_percent, None);
        // Every raw value is published as sent.
        assert_eq!(
            e.raw_named("gsm_signal"),
            Some(&raw_value::Value::UintValue(99))
        );
    }

    #[test]
    fn model_profiles_scale_adc_counts() {
        let all = profiles();
        let by = |n: &str| all.iter().find(|p| p.name == n).unwrap().clone();
        let r = || rec(&[("ad4", V::Uint(0xA58, 8)), ("ad5", V::Uint(0x432, 8))]);
        let t1 = record_event(r(), &by("meitrack-t1"));
        let b = t1.telemetry().battery_volts.unwrap();
        let p = t1.telemetry().external_power_volts.unwrap();
        assert!(
            (b - 4.2666).abs() < 1e-3 && (p - 13.8445).abs() < 1e-3,
            "{b} {p}"
        );
        let mvt = record_event(r(), &by("meitrack-mvt380"));
        assert!((mvt.telemetry().external_power_volts.unwrap() - 50.34).abs() < 0.01);
        let mt90 = record_event(r(), &by("meitrack-mt90"));
        assert_eq!(mt90.telemetry().external_power_volts, None);
        assert!(mt90.telemetry().battery_volts.is_some());
        assert_eq!(all[0].name, PROFILE, "the default comes first");
    }

    #[test]
    fn derived_values_map_but_are_not_published() {
        let mut r = rec(&[("fuel", V::Uint(0x4C21, 2))]);
        r.derived("fuel_percent", V::Double(76.33));
        r.derived("temperature_2", V::Int(-1234));
        r.derived("temperature_legacy_3", V::Double(18.06));
        r.derived("driver_card", V::Text("001234".into()));
        r.derived("battery_level_1", V::Uint(77, 1));
        r.derived("battery_level_2", V::Uint(88, 1));
        r.derived("tag_humidity", V::Int(12_945));
        let e = record_event(r, &default());
        let t = e.telemetry();
        assert_eq!(t.fuel_level_percent, Some(76.33));
        assert!((t.temperatures_celsius[&2] + 12.34).abs() < 1e-9);
        assert_eq!(t.temperatures_celsius.get(&3), Some(&18.06));
        assert_eq!(t.driver_id.as_deref(), Some("001234"));
        assert_eq!(t.battery_percent, Some(77.0));
        assert!((t.humidity_percent.unwrap() - 50.566).abs() < 1e-3);
        assert_eq!(e.raw.len(), 1, "only the raw fuel: {:?}", e.raw);
        // A zero fuel reading is a missing sensor.
        let mut r = rec(&[]);
        r.derived("fuel_percent", V::Double(0.0));
        assert_eq!(
            record_event(r, &default()).telemetry().fuel_level_percent,
            None
        );
    }

    #[test]
    fn cce_ids_map_by_number() {
        let mut r = Record::default();
        for (i, v, w) in [
            (0x07u32, 25u64, 1u8),
            (0x15, 0x05, 1),
            (0x19, 422, 2),
            (0x1A, 1425, 2),
            (0x16, 1234, 2),
            (0xFE69, 100, 1),
            (0xFEF4, 644_515, 4),
            (0x0C, 518_578, 4),
            (0x25, 0, 4),
        ] {
            r.id(i, V::Uint(v, w));
        }
        let e = record_event(r, &default());
        let t = e.telemetry();
        assert_eq!(t.digital_inputs, Some(5));
        let close = |v: Option<f64>, w: f64| v.is_some_and(|v| (v - w).abs() < 1e-9);
        assert!(close(t.battery_volts, 4.22) && close(t.external_power_volts, 14.25));
        assert!(close(t.analog_inputs_volts.get(&1).copied(), 12.34));
        assert_eq!(t.battery_percent, Some(100.0));
        assert_eq!(t.engine_seconds, Some(38_670_900.0));
        assert_eq!(t.odometer_meters, Some(518_578.0));
        assert_eq!(t.driver_id, None, "card 0 is no card");
        assert_eq!(e.kind, EventKind::Status as i32);
        assert_eq!(
            e.raw_id(0xFEF4),
            Some(&raw_value::Value::UintValue(644_515))
        );
    }

    #[test]
    fn the_documented_ignition_profile_works() {
        let toml = r#"
            [profiles.meitrack-vehicle]
            extends = "meitrack"
            [profiles.meitrack-vehicle.names."io_status.ignition"]
            field = "ignition"
            bits = [10, 1]
            [[devices]]
            profile = "meitrack-vehicle"
            imeis = ["356307042441013"]
        "#;
        let set =
            crate::vocab::profiles::ProfileSet::from_toml(std::path::Path::new("p.toml"), toml)
                .unwrap();
        let p = set
            .resolve(Protocol::Meitrack, Some("356307042441013"))
            .unwrap();
        for (io, on) in [(0x0400, true), (0x0B00, false)] {
            let e = record_event(rec(&[("io_status", V::Uint(io, 2))]), &p);
            assert_eq!(e.telemetry().ignition, Some(on), "{io:#06x}");
            assert_eq!(e.telemetry().digital_inputs, Some((io >> 8) as u32));
        }
        let other = set.resolve(Protocol::Meitrack, Some("1")).unwrap();
        let e = record_event(rec(&[("io_status", V::Uint(0x0400, 2))]), &other);
        assert_eq!(e.telemetry().ignition, None, "not by default");
    }

    #[test]
    fn answers_and_files() {
        let e = answer_event(b'Q', "A12", b"OK");
        assert_eq!(e.text.as_deref(), Some("A12,OK"));
        assert_eq!(e.kind, EventKind::CommandResponse as i32);
        assert_eq!(
            e.raw_named("flag"),
            Some(&raw_value::Value::UintValue(0x51))
        );
        let e = answer_event(b'Q', "E91", &[0xff, 0]);
        assert_eq!(e.text, None);
        assert_eq!(
            e.raw_named("data"),
            Some(&raw_value::Value::BytesValue(vec![0xff, 0]))
        );
        let f = file_event("x.jpg".into(), vec![1, 2]);
        assert_eq!(f.file.as_ref().unwrap().r#type, "image");
        assert_eq!(f.kind, EventKind::File as i32);
    }
}
