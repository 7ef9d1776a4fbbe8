//! Wialon IPS onto the vocabulary: where every normalized field of a Wialon IPS device comes
//! from, and the events each packet type becomes.
//!
//! # Raw values
//!
//! `raw` holds, in the order the device sent them:
//!
//! | raw name | value | from |
//! |---|---|---|
//! | `speed`, `course`, `altitude`, `sats`, `hdop` | double (`sats`: uint) | the record's motion fields, **only when it has no coordinates** (with coordinates they are in `position`); Wialon's own names for them |
//! | `inputs`, `outputs` | uint | the D record's digital inputs / outputs bitmasks |
//! | `adc1` … `adcN` | double | the D record's analog inputs (an `NA` in the list is left out) |
//! | `ibutton` | string (bytes when not UTF-8) | the D record's driver key, exactly as sent |
//! | every parameter, under its own name | `1` → int, `2` → double, `3` → string (bytes when not UTF-8) | the D record's `NAME:TYPE:VALUE` list |
//! | `text` | bytes | a `#M#` message that is not UTF-8 (UTF-8 text is in `text` only) |
//! | `driverid`, `code` | string / bytes | a tachograph file (`#IT#` / `#T#`): the driver's id, the tachograph's error code |
//!
//! A parameter named like one of the record's fields (`inputs`, `adc1`) is kept in `raw` after
//! the record's own value; for the mapping the record's own field wins.
//!
//! # Normalized values: the built-in profile `wialon`
//!
//! Rules are keyed by raw name. A name without a rule of its exact spelling is looked up
//! lower-cased, so `SOS` and `Ign` find `sos` and `ign` (Traccar also lower-cases Wialon
//! names). Parameter text `true` / `false` counts as 1 / 0 (devices send flags as type-3
//! strings: `motion:3:false`). Operators override or extend any rule per device in the
//! profile file (`[profiles.NAME.names.<raw name>]`).
//!
//! | raw name | field | why (source) |
//! |---|---|---|
//! | `inputs`, `outputs` | `digital_inputs`, `digital_outputs` (whole masks) | spec: "each bit corresponds to one digital input beginning from the LSB"; flespi `din` / `dout` |
//! | `in1`…`in32`, `out1`…`out32` | digital input / output N | Wialon's sensor parameters: "inN: digital input N" (1..32) |
//! | `adc1`…`adc32` | `analog_inputs_volts[N]` | spec: analog inputs numbered from 1 (`adc1..adcN`); Wialon hardware pages give them in V |
//! | `ibutton`, `avl_driver`, `driverid` | `driver_id` (zero = no key) | spec: "driver key code"; Wialon's driver assignment parameter `avl_driver`; the `#IT#` driver id; Traccar `driverUniqueId` |
//! | `sos` | `ALARM_SOS` when non-zero | spec: "parameter with 1 type named SOS, 1 mean panic button was pressed"; flespi `alarm.event` |
//! | `pwr_ext` | `external_power_volts` | flespi `external.powersource.voltage`; Wialon hardware pages: external power voltage, V |
//! | `pwr_int` | `battery_volts` | flespi `battery.voltage`; Wialon hardware pages: internal power voltage, V |
//! | `battery`, `bat` | `battery_percent` | flespi `battery.level` (percentage, field `battery`); Traccar renames `bat` to `batteryLevel` |
//! | `ign`, `ignition`, `acc` | `ignition` | the ignition / ACC line flag (ACC is ignition in the Chinese firmware that speaks Wialon IPS; GT06's notes use the same word) |
//! | `motion`, `mov` | `motion` | Traccar `motion` (`motion:3:false` in its Wialon test) |
//! | `temp` | `device_temperature_celsius` | Traccar renames Wialon `temp` to `deviceTemp` |
//! | `temp1`…`temp32` | `temperatures_celsius[N]` | Traccar's `temp<N>` sensor convention |
//! | `cool_temp` | `coolant_temperature_celsius` | flespi `can.engine.coolant.temperature` |
//! | `engine_temp` | `engine_temperature_celsius` | flespi `can.engine.temperature` |
//! | `fuel_volume` | `fuel_liters` | flespi `can.fuel.volume` (liters) |
//! | `engine_hours` | `engine_seconds` (hours × 3600) | the name's unit; flespi `engine.motorhours` is in hours |
//! | `rpm` | `rpm` | engine speed, 1/min |
//! | `hdop`, `pdop` | `position.hdop`, `position.pdop` | dilution of precision (the D record's own `hdop` field wins over a parameter) |
//! | `accuracy` | `position.accuracy_meters` | Traccar reads Wialon `accuracy` as the position's accuracy |
//! | `iccid`, `vin` | `iccid`, `vin` | Wialon hardware pages (`iccid`: "the ICCID of the SIM card") |
//!
//! Structural facts, done in code (not rules, because they are not one value each):
//! `mcc`/`mnc`/`lac`/`cell_id` with the same suffix (`mcc1`, `mnc1`, …; Wialon hardware pages
//! name them `mcc[NUM]` …, Traccar builds cell towers from them) become `cell_towers` when all
//! four are there; the `text` parameter ("to send a driver message with position", spec)
//! becomes the event's `text`.
//!
//! # Deliberately not mapped (kept in `raw`)
//!
//! - `gsm`, `gsm_lvl`, `csq`: devices send 0–5 bars, CSQ 0–31 (where 99 means unknown) or a
//!   percentage under these names; no one scale is right, and a linear rule would turn CSQ 99
//!   into 319 %. Map per fleet: `[profiles.x.names.gsm]` `field = "gsm_signal_percent"`,
//!   `scale = 3.2258` (CSQ) or `20` (0–5 bars).
//! - `odo`, `odometer`, `mileage`, `can_mileage`: kilometres on some firmware, metres on other
//!   (Wialon's own counters are in metres, its mileage sensors in km). Map per fleet with
//!   `field = "odometer_meters"` and `scale = 1000` or `1`.
//! - `fuel`, `fuel1`…, `fuel_level`, `fuel_lvl`: a fuel level sensor's reading, in litres,
//!   percent or raw sensor units depending on its calibration (Traccar's frame sends
//!   `fuel1:2:21588.0`).
//! - `hours`: engine hours on some devices, other counters on others.
//!
//! # Events
//!
//! - SD / D / B records: POSITION with coordinates; without them LBS when cell towers were
//!   reported, else STATUS; ALARM when an alarm was raised (the position stays). `NA` date and
//!   time: no `device_time` (the device did not say; `received_at` is the server's time).
//!   Records of a `#B#` packet carry the attribute `blackbox = true`: a fact about the packet
//!   (the device sends them from its memory, after a gap in coverage), not a value the
//!   device sent, so it is no raw value.
//! - `#P#`: HEARTBEAT. `#M#`: DRIVER_MESSAGE with `text`. Completed `#I#` photos and
//!   `#IT#`/`#T#` tachograph files: FILE with `file { name, type ("image" / "tachograph"),
//!   data }`. A tachograph that reports an error instead of a file: STATUS with `driverid`
//!   and `code` in raw.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::event::{attr, raw, timestamp_secs};
use crate::proto::{
    raw_value, Alarm, CellTower, EventKind, File, Position, Protocol, RawValue, TelemetryEvent,
};
use crate::vocab::{Field, Key, Mapper, Profile, Rule, Value};

use super::packet::{ParamValue, Record};

/// The built-in profile's name.
pub const PROFILE: &str = "wialon";

/// Raw names of the values that are fields of the record (or packet) rather than parameters.
pub mod names {
    pub const SPEED: &str = "speed";
    pub const COURSE: &str = "course";
    pub const ALTITUDE: &str = "altitude";
    pub const SATS: &str = "sats";
    pub const HDOP: &str = "hdop";
    pub const INPUTS: &str = "inputs";
    pub const OUTPUTS: &str = "outputs";
    /// `adc1`, `adc2`, ...
    pub const ADC_PREFIX: &str = "adc";
    pub const IBUTTON: &str = "ibutton";
    /// A `#M#` text that is not UTF-8; also the parameter that carries a driver message.
    pub const TEXT: &str = "text";
    pub const DRIVER_ID: &str = "driverid";
    pub const TACHOGRAPH_CODE: &str = "code";
}

/// What `file.type` says.
pub const FILE_IMAGE: &str = "image";
pub const FILE_TACHOGRAPH: &str = "tachograph";

/// How many numbered inputs, outputs, analog inputs and temperature sensors the built-in
/// profile maps (Wialon numbers digital inputs and outputs 1..32).
const NUMBERED: u8 = 32;

fn name(n: &'static str) -> Key {
    Key::Name(Cow::Borrowed(n))
}

fn numbered(prefix: &str, i: u8) -> Key {
    Key::Name(Cow::Owned(format!("{prefix}{i}")))
}

/// The built-in profile (see the module doc for every rule and its source).
fn wialon() -> Profile {
    use Field as F;
    let mut rules = vec![
        (name(names::INPUTS), Rule::field(F::DigitalInputs)),
        (name(names::OUTPUTS), Rule::field(F::DigitalOutputs)),
        (
            name(names::IBUTTON),
            Rule::field(F::DriverId).zero_is_absent(),
        ),
        (
            name("avl_driver"),
            Rule::field(F::DriverId).zero_is_absent(),
        ),
        (
            name(names::DRIVER_ID),
            Rule::field(F::DriverId).zero_is_absent(),
        ),
        (name("sos"), Rule::alarm(Alarm::Sos)),
        (name("pwr_ext"), Rule::field(F::ExternalPowerVolts)),
        (name("pwr_int"), Rule::field(F::BatteryVolts)),
        (name("battery"), Rule::field(F::BatteryPercent)),
        (name("bat"), Rule::field(F::BatteryPercent)),
        (name("ign"), Rule::field(F::Ignition)),
        (name("ignition"), Rule::field(F::Ignition)),
        (name("acc"), Rule::field(F::Ignition)),
        (name("motion"), Rule::field(F::Motion)),
        (name("mov"), Rule::field(F::Motion)),
        (name("temp"), Rule::field(F::DeviceTemperatureCelsius)),
        (name("cool_temp"), Rule::field(F::CoolantTemperatureCelsius)),
        (
            name("engine_temp"),
            Rule::field(F::EngineTemperatureCelsius),
        ),
        (name("fuel_volume"), Rule::field(F::FuelLiters)),
        (
            name("engine_hours"),
            Rule::field(F::EngineSeconds).scale(3600.0),
        ),
        (name("rpm"), Rule::field(F::Rpm)),
        (name("hdop"), Rule::field(F::Hdop)),
        (name("pdop"), Rule::field(F::Pdop)),
        (name("accuracy"), Rule::field(F::AccuracyMeters)),
        (name("iccid"), Rule::field(F::Iccid)),
        (name("vin"), Rule::field(F::Vin)),
    ];
    for i in 1..=NUMBERED {
        rules.push((numbered("in", i), Rule::input(i)));
        rules.push((numbered("out", i), Rule::output(i)));
        rules.push((
            numbered(names::ADC_PREFIX, i),
            Rule::indexed(F::AnalogInputsVolts, i.into()),
        ));
        rules.push((
            numbered("temp", i),
            Rule::indexed(F::TemperaturesCelsius, i.into()),
        ));
    }
    Profile::new(PROFILE, Protocol::WialonIps, rules)
}

/// The built-in profiles; `wialon` is the default.
pub fn profiles() -> Vec<Profile> {
    vec![wialon()]
}

/// A parameter value as typed on the wire.
fn param_raw(name: &str, v: &ParamValue) -> RawValue {
    match v {
        ParamValue::Int(i) => raw::int(name, *i),
        ParamValue::Double(d) => raw::double(name, *d),
        ParamValue::Text(t) => raw::text(name, t),
    }
}

/// A raw value as the mapper reads it: text that says `true` / `false` is a flag.
fn mapper_value(r: &RawValue) -> Option<Value<'_>> {
    if let Some(raw_value::Value::StringValue(s)) = &r.value {
        let s = s.trim();
        if s.eq_ignore_ascii_case("true") {
            return Some(Value::Uint(1, 1));
        }
        if s.eq_ignore_ascii_case("false") {
            return Some(Value::Uint(0, 1));
        }
    }
    r.as_value()
}

/// Feeds one named raw value: its rules by exact name (with their labelled ones), else by the
/// lower-cased name.
fn feed(m: &mut Mapper<'_>, r: &RawValue) {
    let Some(v) = mapper_value(r) else {
        return;
    };
    if m.profile().named(&r.name).next().is_some() {
        m.name(&r.name, v);
    } else if r.name.bytes().any(|b| b.is_ascii_uppercase()) {
        m.name(&r.name.to_ascii_lowercase(), v);
    }
}

/// Maps `raw` (record fields first, then `params_from..` the parameters): parameters first,
/// so the record's own fields win where both map the same field. Wialon Retranslator, whose
/// blocks carry the same parameters, maps them here too (`params_from` 0).
pub(crate) fn map(e: &mut TelemetryEvent, profile: &Profile, params_from: usize) {
    let mut m = Mapper::new(profile);
    let (own, params) = e.raw.split_at(params_from.min(e.raw.len()));
    for r in params.iter().chain(own) {
        feed(&mut m, r);
    }
    m.finish(e);
}

/// An unsigned integer from a parameter (Traccar reads `mnc1:1:02` as 2).
fn as_u64(r: &RawValue) -> Option<u64> {
    match r.value.as_ref()? {
        raw_value::Value::IntValue(v) => u64::try_from(*v).ok(),
        raw_value::Value::UintValue(v) => Some(*v),
        raw_value::Value::DoubleValue(v) if v.fract() == 0.0 && *v >= 0.0 && *v < 1.8e19 => {
            Some(*v as u64)
        }
        raw_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Cell towers from `mcc[N]`, `mnc[N]`, `lac[N]`, `cell_id[N]` parameters: one per suffix
/// that has all four, in suffix order (no suffix first).
pub(crate) fn cell_towers(params: &[RawValue]) -> Vec<CellTower> {
    const PARTS: [&str; 4] = ["mcc", "mnc", "lac", "cell_id"];
    let mut by_index: BTreeMap<u32, [Option<u64>; 4]> = BTreeMap::new();
    for r in params {
        let n = r.name.as_bytes();
        for (k, part) in PARTS.iter().enumerate() {
            let Some(suffix) = n
                .get(..part.len())
                .filter(|p| p.eq_ignore_ascii_case(part.as_bytes()))
                .and_then(|_| n.get(part.len()..))
            else {
                continue;
            };
            let index = if suffix.is_empty() {
                Some(0)
            } else if suffix.iter().all(u8::is_ascii_digit) && suffix.len() <= 6 {
                std::str::from_utf8(suffix)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .map(|i| i.saturating_add(1))
            } else {
                None
            };
            if let (Some(i), Some(v)) = (index, as_u64(r)) {
                by_index.entry(i).or_default()[k] = Some(v);
            }
        }
    }
    by_index
        .values()
        .filter_map(|[mcc, mnc, lac, cell]| {
            Some(CellTower {
                mcc: u32::try_from((*mcc)?).ok()?,
                mnc: u32::try_from((*mnc)?).ok()?,
                lac: (*lac)?,
                cell_id: (*cell)?,
                signal: None,
            })
        })
        .collect()
}

fn event(kind: EventKind) -> TelemetryEvent {
    TelemetryEvent {
        protocol: Protocol::WialonIps as i32,
        kind: kind as i32,
        ..Default::default()
    }
}

/// One SD / D record. `blackbox`: it came in a `#B#` packet.
pub fn record_event(r: &Record, profile: &Profile, blackbox: bool) -> TelemetryEvent {
    let position = match (r.latitude, r.longitude) {
        (Some(latitude), Some(longitude)) => Some(Position {
            latitude,
            longitude,
            altitude: r.height,
            speed: r.speed,
            course: r.course,
            satellites: r.satellites,
            hdop: r.hdop,
            // The spec has no validity flag: a record with coordinates is a fix, unless the
            // device says it used no satellites.
            valid: r.satellites.is_none_or(|s| s > 0),
            ..Default::default()
        }),
        _ => None,
    };
    let mut raw_values: Vec<RawValue> = Vec::with_capacity(8 + r.adc.len() + r.params.len());
    if position.is_none() {
        let motion = [
            (names::SPEED, r.speed),
            (names::COURSE, r.course),
            (names::ALTITUDE, r.height),
        ];
        for (n, v) in motion {
            if let Some(v) = v {
                raw_values.push(raw::double(n, v));
            }
        }
        if let Some(s) = r.satellites {
            raw_values.push(raw::uint(names::SATS, s.into()));
        }
        if let Some(h) = r.hdop {
            raw_values.push(raw::double(names::HDOP, h));
        }
    }
    if let Some(v) = r.inputs {
        raw_values.push(raw::uint(names::INPUTS, v));
    }
    if let Some(v) = r.outputs {
        raw_values.push(raw::uint(names::OUTPUTS, v));
    }
    for (i, v) in r.adc.iter().enumerate() {
        if let Some(v) = v {
            let mut n = String::with_capacity(6);
            n.push_str(names::ADC_PREFIX);
            crate::event::push_decimal(&mut n, i as u64 + 1);
            raw_values.push(raw::double(n, *v));
        }
    }
    if let Some(b) = &r.ibutton {
        raw_values.push(raw::text(names::IBUTTON, b));
    }
    let params_from = raw_values.len();
    raw_values.extend(r.params.iter().map(|(n, v)| param_raw(n, v)));
    let towers = cell_towers(&raw_values[params_from..]);
    let kind = match (&position, towers.is_empty()) {
        (Some(_), _) => EventKind::Position,
        (None, false) => EventKind::Lbs,
        (None, true) => EventKind::Status,
    };
    let mut e = event(kind);
    e.device_time = r.time.map(timestamp_secs);
    e.position = position;
    e.raw = raw_values;
    e.cell_towers = towers;
    e.text = r.params.iter().find_map(|(n, v)| match v {
        ParamValue::Text(t) if n == names::TEXT => Some(String::from_utf8_lossy(t).into_owned()),
        _ => None,
    });
    if blackbox {
        e.set("blackbox", attr::boolean(true));
    }
    map(&mut e, profile, params_from);
    // The record's own HDOP field is what the fix reported; a parameter does not replace it.
    if let (Some(p), Some(h)) = (e.position.as_mut(), r.hdop) {
        p.hdop = Some(h);
    }
    e
}

/// `#P#`: a keep-alive.
pub fn heartbeat_event() -> TelemetryEvent {
    event(EventKind::Heartbeat)
}

/// `#M#`: a message from the driver. `text` is the message (lossy for a code page other than
/// UTF-8, whose exact bytes are then in `raw`).
pub fn message_event(text: &[u8]) -> TelemetryEvent {
    let mut e = event(EventKind::DriverMessage);
    e.text = Some(String::from_utf8_lossy(text).into_owned());
    if std::str::from_utf8(text).is_err() {
        e.raw.push(raw::bytes(names::TEXT, text));
    }
    e
}

/// A completed photo or tachograph file. `driver`: the tachograph file's driver id (mapped to
/// `driver_id` through the profile).
pub fn file_event(
    name: String,
    file_type: &str,
    data: Vec<u8>,
    time: Option<i64>,
    driver: Option<&[u8]>,
    profile: &Profile,
) -> TelemetryEvent {
    let mut e = event(EventKind::File);
    e.device_time = time.map(timestamp_secs);
    e.file = Some(File {
        name,
        r#type: file_type.to_string(),
        data,
    });
    if let Some(d) = driver {
        e.raw.push(raw::text(names::DRIVER_ID, d));
    }
    map(&mut e, profile, 0);
    e
}

/// `#IT#` with an error code: the tachograph could not produce the driver's file.
pub fn tachograph_error_event(driver: &[u8], code: &[u8], profile: &Profile) -> TelemetryEvent {
    let mut e = event(EventKind::Status);
    e.raw.push(raw::text(names::DRIVER_ID, driver));
    e.raw.push(raw::text(names::TACHOGRAPH_CODE, code));
    map(&mut e, profile, 0);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raw_value::Value as RawV;
    use crate::protocol::wialon::packet::parse_record;

    fn record(body: &str) -> Record {
        let fields: Vec<&[u8]> = body.as_bytes().split(|&b| b == b';').collect();
        parse_record(&fields).unwrap()
    }

    fn d(params: &str) -> Record {
        record(&format!(
            "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;0.8;5;6;14.77,NA,3.6;AB45DF01145;{params}"
        ))
    }

    fn p() -> Profile {
        wialon()
    }

    #[test]
    fn record_fields_and_conventional_parameters_map_onto_the_vocabulary() {
        let e = record_event(
            &d(
                "pwr_ext:2:12.6,pwr_int:2:4.1,battery:1:87,ign:1:1,mov:1:0,temp:2:31.5,\
                temp2:2:-4.5,cool_temp:1:90,engine_temp:1:95,fuel_volume:2:41.5,\
                engine_hours:2:1.5,rpm:1:2100,pdop:2:1.9,iccid:3:8937204016201234567,\
                vin:3:WVWZZZ1JZXW000001,in3:1:1,out2:1:1",
            ),
            &p(),
            false,
        );
        let t = e.telemetry();
        assert_eq!(t.external_power_volts, Some(12.6));
        assert_eq!(t.battery_volts, Some(4.1));
        assert_eq!(t.battery_percent, Some(87.0));
        assert_eq!((t.ignition, t.motion), (Some(true), Some(false)));
        assert_eq!(t.device_temperature_celsius, Some(31.5));
        assert_eq!(t.temperatures_celsius.get(&2), Some(&-4.5));
        assert_eq!(t.coolant_temperature_celsius, Some(90.0));
        assert_eq!(t.engine_temperature_celsius, Some(95.0));
        assert_eq!(t.fuel_liters, Some(41.5));
        assert_eq!(t.engine_seconds, Some(5400.0));
        assert_eq!(t.rpm, Some(2100.0));
        assert_eq!(t.iccid.as_deref(), Some("8937204016201234567"));
        assert_eq!(t.vin.as_deref(), Some("WVWZZZ1JZXW000001"));
        // The record's inputs (5 = 0b101) with parameter in3 set; outputs 6 with out2.
        assert_eq!(t.digital_inputs, Some(0b101));
        assert_eq!(t.digital_outputs, Some(0b110));
        assert_eq!(t.analog_inputs_volts.get(&1), Some(&14.77));
        assert_eq!(t.analog_inputs_volts.get(&2), None);
        assert_eq!(t.analog_inputs_volts.get(&3), Some(&3.6));
        assert_eq!(t.driver_id.as_deref(), Some("AB45DF01145"));
        let pos = e.position.unwrap();
        assert_eq!((pos.hdop, pos.pdop), (Some(0.8), Some(1.9)));
        assert_eq!(e.kind, EventKind::Position as i32);
        assert!(e.alarms.is_empty());
    }

    #[test]
    fn raw_keeps_every_value_typed_under_its_own_name_in_wire_order() {
        let e = record_event(&d("count1:1:564,fuel:2:45.8,hw:3:V4.5"), &p(), false);
        let names: Vec<&str> = e.raw.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["inputs", "outputs", "adc1", "adc3", "ibutton", "count1", "fuel", "hw"]
        );
        assert!(e.raw.iter().all(|r| r.id.is_none()));
        assert_eq!(e.raw_named("inputs"), Some(&RawV::UintValue(5)));
        assert_eq!(e.raw_named("adc3"), Some(&RawV::DoubleValue(3.6)));
        assert_eq!(
            e.raw_named("ibutton"),
            Some(&RawV::StringValue("AB45DF01145".into()))
        );
        assert_eq!(e.raw_named("count1"), Some(&RawV::IntValue(564)));
        assert_eq!(e.raw_named("fuel"), Some(&RawV::DoubleValue(45.8)));
        assert_eq!(e.raw_named("hw"), Some(&RawV::StringValue("V4.5".into())));
        // `fuel` has no unit of its own: raw only.
        assert_eq!(e.telemetry().fuel_level_percent, None);
        assert_eq!(e.telemetry().fuel_liters, None);
        assert!(e.attributes.is_empty());
    }

    #[test]
    fn a_parameter_named_like_a_record_field_does_not_replace_it() {
        let e = record_event(&d("inputs:1:255,adc1:2:99.9,hdop:2:7.5"), &p(), false);
        assert_eq!(e.telemetry().digital_inputs, Some(5));
        assert_eq!(e.telemetry().analog_inputs_volts.get(&1), Some(&14.77));
        assert_eq!(e.position.unwrap().hdop, Some(0.8));
        // Both stay in raw: the record's first, then the device's parameter.
        let inputs: Vec<_> = e.raw.iter().filter(|r| r.name == "inputs").collect();
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[1].value, Some(RawV::IntValue(255)));
    }

    #[test]
    fn sos_raises_an_alarm_in_any_case_and_zero_does_not() {
        let e = record_event(&d("SOS:1:1"), &p(), false);
        assert_eq!(e.alarms, vec![Alarm::Sos as i32]);
        assert_eq!(e.kind, EventKind::Alarm as i32);
        assert!(e.position.is_some());
        assert_eq!(e.raw_named("SOS"), Some(&RawV::IntValue(1)));
        let e = record_event(&d("sos:1:0"), &p(), false);
        assert!(e.alarms.is_empty());
        assert_eq!(e.kind, EventKind::Position as i32);
    }

    #[test]
    fn text_flags_numbers_and_the_text_parameter() {
        let e = record_event(
            &d("motion:3:false,ign:3:TRUE,bat:3:99,text:3:help me"),
            &p(),
            false,
        );
        let t = e.telemetry();
        assert_eq!((t.motion, t.ignition), (Some(false), Some(true)));
        assert_eq!(t.battery_percent, Some(99.0));
        assert_eq!(e.text.as_deref(), Some("help me"));
        assert_eq!(
            e.raw_named("motion"),
            Some(&RawV::StringValue("false".into()))
        );
    }

    #[test]
    fn no_coordinates_keeps_motion_fields_raw_and_is_status_or_lbs() {
        let e = record_event(
            &record("NA;NA;NA;NA;NA;NA;12.5;NA;NA;3;1.2;NA;NA;;NA;NA"),
            &p(),
            false,
        );
        assert_eq!(e.kind, EventKind::Status as i32);
        assert!(e.position.is_none() && e.device_time.is_none());
        assert_eq!(e.raw_named("speed"), Some(&RawV::DoubleValue(12.5)));
        assert_eq!(e.raw_named("sats"), Some(&RawV::UintValue(3)));
        assert_eq!(e.raw_named("hdop"), Some(&RawV::DoubleValue(1.2)));
        assert!(e.raw_named("course").is_none());
        // Cell towers: every suffix with all four parts, in suffix order.
        let e = record_event(
            &record(
                "NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;;NA;mnc1:1:02,mcc1:1:250,lac1:1:5901,\
                 cell_id1:1:45542,mcc2:1:222,mnc2:1:22,lac2:1:2222,cell_id2:1:22222,mcc3:1:333",
            ),
            &p(),
            false,
        );
        assert_eq!(e.kind, EventKind::Lbs as i32);
        let towers: Vec<_> = e
            .cell_towers
            .iter()
            .map(|c| (c.mcc, c.mnc, c.lac, c.cell_id))
            .collect();
        assert_eq!(towers, [(250, 2, 5901, 45542), (222, 22, 2222, 22222)]);
    }

    #[test]
    fn ambiguous_names_stay_raw_only() {
        let e = record_event(
            &d("gsm:1:4,gsm_lvl:1:20,odometer:2:1234.5,mileage:1:10,fuel1:2:21588.0,hours:1:3"),
            &p(),
            false,
        );
        let t = e.telemetry();
        assert_eq!(
            (
                t.gsm_signal_percent,
                t.odometer_meters,
                t.fuel_level_percent,
                t.engine_seconds
            ),
            (None, None, None, None)
        );
        assert_eq!(e.raw.len(), 5 + 6);
    }

    #[test]
    fn blackbox_is_an_attribute_not_a_raw_value_and_na_time_has_no_device_time() {
        let e = record_event(
            &record("NA;NA;5544.6025;N;03739.6834;E;1;2;3;4"),
            &p(),
            true,
        );
        assert_eq!(
            e.attr("blackbox"),
            Some(&crate::proto::attribute_value::Value::BoolValue(true))
        );
        assert!(e.raw.is_empty());
        assert!(e.device_time.is_none());
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn a_zero_ibutton_is_no_driver() {
        let e = record_event(
            &record("270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;;0000000000;NA"),
            &p(),
            false,
        );
        assert_eq!(e.telemetry().driver_id, None);
        assert_eq!(
            e.raw_named("ibutton"),
            Some(&RawV::StringValue("0000000000".into()))
        );
    }

    #[test]
    fn messages_files_and_heartbeats() {
        let e = message_event("привет".as_bytes());
        assert_eq!(e.kind, EventKind::DriverMessage as i32);
        assert_eq!(e.text.as_deref(), Some("привет"));
        assert!(e.raw.is_empty());
        let e = message_event(b"\xcf\xf0\xe8");
        assert_eq!(
            e.raw_named("text"),
            Some(&RawV::BytesValue(vec![0xcf, 0xf0, 0xe8]))
        );
        assert_eq!(heartbeat_event().kind, EventKind::Heartbeat as i32);
        let e = file_event(
            "D1_20130427_205601.ddd".into(),
            FILE_TACHOGRAPH,
            vec![1, 2, 3],
            Some(1_367_096_161),
            Some(b"D1"),
            &p(),
        );
        assert_eq!(e.kind, EventKind::File as i32);
        let f = e.file.as_ref().unwrap();
        assert_eq!(
            (f.name.as_str(), f.r#type.as_str()),
            ("D1_20130427_205601.ddd", "tachograph")
        );
        assert_eq!(f.data, [1, 2, 3]);
        assert_eq!(e.telemetry().driver_id.as_deref(), Some("D1"));
        let e = tachograph_error_event(b"D1", b"5", &p());
        assert_eq!(e.kind, EventKind::Status as i32);
        assert_eq!(e.raw_named("code"), Some(&RawV::StringValue("5".into())));
        assert_eq!(e.telemetry().driver_id.as_deref(), Some("D1"));
    }

    #[test]
    fn operators_override_by_raw_name() {
        let mut prof = p();
        prof.extend([(
            Key::Name("gsm".into()),
            Rule::field(Field::GsmSignalPercent).scale(20.0),
        )]);
        let e = record_event(&d("gsm:1:4"), &prof, false);
        assert_eq!(e.telemetry().gsm_signal_percent, Some(80.0));
    }
}
