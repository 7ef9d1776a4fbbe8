//! GPS103 (Coban TK10x) onto the vocabulary: the raw names of every value a report carries,
//! the built-in profile that maps them, and the events each message becomes.
//!
//! # Raw values
//!
//! GPS103 fields are positional; `raw` names them by their documented meaning, in the order
//! sent, and types them as sent (digits → uint, a sign → int, a decimal point → double,
//! anything else → string, bytes when not UTF-8). Empty fields and `---` placeholders are no
//! values. A value that does not have the shape its position documents (a door state of
//! `51.6`, a fuel field without `%`: firmware variants) is kept as `field<N>` (N = its index
//! in the comma-separated message, `imei:` being 0), never under a name that would misstate
//! it.
//!
//! | raw name | value | from |
//! |---|---|---|
//! | `keyword` | string | the report's second field (`tracker`, `help me`, `acc on`, `T:+28.0`, `vt14`, …) |
//! | `alarm_temp` | double | the temperature of a `T:<temp>` keyword |
//! | `alarm_fuel` | double | the value of an `oil <value>` keyword |
//! | `local_time` | string | the device's local clock, as sent (`yymmddhhmm[ss]`; also in OBD lines) |
//! | `phone` / `rfid` | string | the fourth field: the authorised phone, or the card of an `rfid` report |
//! | `fix` | string | `F` (GNSS) or `L` (no fix) |
//! | `utc_time` | string | the fix's UTC time, as sent (`hhmmss.sss`) |
//! | `lac`, `cell_id` | uint | an `L` report's serving cell (hex on the wire) |
//! | `speed`, `course`, `altitude` | double | only for reports **without** a position (knots, degrees, metres); with one they are in `position` |
//! | `acc`, `door` | uint | `0`/`1` after the altitude |
//! | `fuel1`, `fuel2` | double | `NN.N%` fuel levels (the `%` dropped) |
//! | `temp` | double | the temperature after the fuel fields |
//! | `dtc` | string | a trouble code (`P0021`) in the report's tail (`DTC` reports) |
//! | `obd_odometer`, `obd_fuel_instant`, `obd_fuel_average`, `obd_hours`, `obd_speed`, `obd_load`, `obd_coolant`, `obd_throttle`, `obd_rpm`, `obd_battery`, `obd_dtc` | as typed | the `OBD` line, in its order (`obd_load`/`obd_throttle`: `%` dropped; one `obd_dtc` per code) |
//! | `label`, `event`, `sensor_id`, `sensor_voltage`, `rssi`, `gps_status`, `ignition`, `charge`, `error` | as typed | the alternative (`*`) form; its hdop and satellites are in `position` |
//!
//! # Normalized values: the built-in profile `gps103`
//!
//! The keyword is a fact about the report rather than a value: the mapper is fed
//! `keyword:<keyword>` (value 1) so that its alarm is a rule operators can override or extend
//! per fleet (`[profiles.gps103.names."keyword:help me"]`). Keywords with a value in them are
//! fed by family: `keyword:T:`, `keyword:oil`, and `keyword:acc` (1 for `acc on`, 0 for
//! `acc off`). The keyword is fed after the values, so an `acc off` report says ignition off
//! whatever its `acc` field says.
//!
//! | raw name | field | why (source) |
//! |---|---|---|
//! | `keyword:help me` | `ALARM_SOS` | Coban protocol: SOS alarm; Traccar `sos` |
//! | `keyword:low battery` | `ALARM_LOW_BATTERY` | Traccar `lowBattery` |
//! | `keyword:move` | `ALARM_MOVEMENT` | Traccar `movement` |
//! | `keyword:speed` | `ALARM_OVERSPEED` | Traccar `overspeed` |
//! | `keyword:stockade` | `ALARM_GEOFENCE` | geo-fence breach, no direction; Traccar `geofence` |
//! | `keyword:ac alarm` | `ALARM_POWER_CUT` | external power cut; Traccar `powerCut` |
//! | `keyword:door alarm` | `ALARM_DOOR` | Traccar `door` |
//! | `keyword:sensor alarm` | `ALARM_VIBRATION` | shock sensor; Traccar `vibration` |
//! | `keyword:accident alarm` | `ALARM_ACCIDENT` | Traccar `accident` |
//! | `keyword:bonnet alarm` | `ALARM_BONNET` | Traccar `bonnet` |
//! | `keyword:footbrake alarm` | `ALARM_FOOT_BRAKE` | Traccar `footBrake` |
//! | `keyword:DTC` | `ALARM_FAULT` | trouble codes reported; Traccar `fault` |
//! | `keyword:T:` | `ALARM_TEMPERATURE` | Traccar `temperature` |
//! | `keyword:oil` | `ALARM_FUEL_LEAK` | `oil1`, `oil2`, `oil <level>`; Traccar `fuelLeak` |
//! | `keyword:acc` | `ignition` | `acc on` / `acc off`; Traccar `ignition` |
//! | `acc`, `ignition` | `ignition` | the ACC line (`0`/`1`); Traccar `ignition` |
//! | `door` | `door_open` | Traccar `door` |
//! | `fuel1` | `fuel_level_percent` | the first fuel sensor in % of the tank (the wire's `%`); Traccar `fuel1` |
//! | `temp`, `alarm_temp` | `temperatures_celsius[1]` | Traccar `temp1` |
//! | `rfid` | `driver_id` | the card of an `rfid` report; Traccar `driverUniqueId` |
//! | `dtc`, `obd_dtc` | `dtcs` | trouble codes; Traccar `dtcs` |
//! | `obd_odometer` | `obd_odometer_meters` (km × 1000) | flespi's Coban `can.vehicle.mileage` (km) |
//! | `obd_fuel_instant` | `fuel_rate_liters_per_hour` | flespi `can.fuel.consumption` (l/h) |
//! | `obd_hours` | `engine_seconds` (h × 3600) | flespi `can.total.driving.time` (hours); Traccar `hours` |
//! | `obd_speed` | `obd_speed_kmh` | flespi `can.vehicle.speed`; Traccar `obdSpeed` |
//! | `obd_load` | `engine_load_percent` | flespi `can.engine.load.level`; Traccar `engineLoad` |
//! | `obd_coolant` | `coolant_temperature_celsius` | flespi `can.engine.coolant.temperature`; Traccar `coolantTemp` |
//! | `obd_throttle` | `throttle_percent` | flespi `can.throttle.pedal.level`; Traccar `throttle` |
//! | `obd_rpm` | `rpm` | flespi `can.engine.rpm`; Traccar `rpm` |
//! | `obd_battery` | `external_power_volts` | the vehicle's battery, which supplies the device; flespi `can.onboard.power.voltage` |
//! | `charge` | `charging` | the alternative form's charge flag; Traccar `charge` |
//! | `rssi` | `gsm_signal_percent` (CSQ 0–31 × 100/31; 99 = unknown is outside the range) | the alternative form's signal (values 14, 26 seen); Traccar `rssi` |
//!
//! # Deliberately not mapped (kept in `raw`)
//!
//! - `fuel2`: a second tank's level; the vocabulary has one fuel level.
//! - `alarm_fuel` (`oil 51.67`): litres or percent depending on the sensor's calibration.
//! - `obd_fuel_average`: litres per 100 km; no field has that unit.
//! - `phone`, `label`, `event`, `sensor_id`, `sensor_voltage`, `gps_status`, `error`,
//!   `field<N>`: device facts without a normalized counterpart.
//!
//! # Events
//!
//! - Reports: POSITION with an `F` fix (speed converted from knots to km/h); LBS with an `L`
//!   cell (`cell_towers`, MCC and MNC 0: the message has none); STATUS otherwise; ALARM when
//!   the keyword raised one (the position stays).
//! - OBD lines: STATUS. Alternative form: POSITION. Heartbeats: HEARTBEAT. A completed photo:
//!   FILE (`file { name, type "image", data }`).

use std::borrow::Cow;

use crate::event::{map_raw, raw, Timestamp};
use crate::proto::{
    Alarm, CellTower, EventKind, File, Position, Protocol, RawValue, TelemetryEvent,
};
use crate::vocab::{Field, Key, Profile, Rule, Value};

use super::packet::{self, at, Located, Report};

/// The built-in profile's name.
pub const PROFILE: &str = "gps103";

/// What `file.type` says for a photo.
pub const FILE_IMAGE: &str = "image";

/// One knot in km/h.
const KMH_PER_KNOT: f64 = 1.852;

/// Raw names.
pub mod names {
    pub const KEYWORD: &str = "keyword";
    pub const ALARM_TEMP: &str = "alarm_temp";
    pub const ALARM_FUEL: &str = "alarm_fuel";
    pub const LOCAL_TIME: &str = "local_time";
    pub const PHONE: &str = "phone";
    pub const RFID: &str = "rfid";
    pub const FIX: &str = "fix";
    pub const UTC_TIME: &str = "utc_time";
    pub const LAC: &str = "lac";
    pub const CELL_ID: &str = "cell_id";
    pub const SPEED: &str = "speed";
    pub const COURSE: &str = "course";
    pub const ALTITUDE: &str = "altitude";
    pub const ACC: &str = "acc";
    pub const DOOR: &str = "door";
    pub const FUEL1: &str = "fuel1";
    pub const FUEL2: &str = "fuel2";
    pub const TEMP: &str = "temp";
    pub const DTC: &str = "dtc";
    /// `field<N>`: a value whose shape does not fit its documented position.
    pub const FIELD_PREFIX: &str = "field";
    pub const OBD_ODOMETER: &str = "obd_odometer";
    pub const OBD_FUEL_INSTANT: &str = "obd_fuel_instant";
    pub const OBD_FUEL_AVERAGE: &str = "obd_fuel_average";
    pub const OBD_HOURS: &str = "obd_hours";
    pub const OBD_SPEED: &str = "obd_speed";
    pub const OBD_LOAD: &str = "obd_load";
    pub const OBD_COOLANT: &str = "obd_coolant";
    pub const OBD_THROTTLE: &str = "obd_throttle";
    pub const OBD_RPM: &str = "obd_rpm";
    pub const OBD_BATTERY: &str = "obd_battery";
    pub const OBD_DTC: &str = "obd_dtc";
    pub const LABEL: &str = "label";
    pub const EVENT: &str = "event";
    pub const SENSOR_ID: &str = "sensor_id";
    pub const SENSOR_VOLTAGE: &str = "sensor_voltage";
    pub const RSSI: &str = "rssi";
    pub const GPS_STATUS: &str = "gps_status";
    pub const IGNITION: &str = "ignition";
    pub const CHARGE: &str = "charge";
    pub const ERROR: &str = "error";
    /// The prefix the keyword is fed to the mapper with (`keyword:help me`).
    pub const KEYWORD_RULE: &str = "keyword:";
}

fn name(n: &'static str) -> Key {
    Key::Name(Cow::Borrowed(n))
}

/// The keyword alarms (see the module doc for each source).
const KEYWORD_ALARMS: &[(&str, Alarm)] = &[
    ("keyword:help me", Alarm::Sos),
    ("keyword:low battery", Alarm::LowBattery),
    ("keyword:move", Alarm::Movement),
    ("keyword:speed", Alarm::Overspeed),
    ("keyword:stockade", Alarm::Geofence),
    ("keyword:ac alarm", Alarm::PowerCut),
    ("keyword:door alarm", Alarm::Door),
    ("keyword:sensor alarm", Alarm::Vibration),
    ("keyword:accident alarm", Alarm::Accident),
    ("keyword:bonnet alarm", Alarm::Bonnet),
    ("keyword:footbrake alarm", Alarm::FootBrake),
    ("keyword:DTC", Alarm::Fault),
    ("keyword:T:", Alarm::Temperature),
    ("keyword:oil", Alarm::FuelLeak),
];

/// The built-in profile (see the module doc for every rule and its source).
fn gps103() -> Profile {
    use names as n;
    use Field as F;
    let mut rules: Vec<(Key, Rule)> = KEYWORD_ALARMS
        .iter()
        .map(|(k, a)| (name(k), Rule::alarm(*a)))
        .collect();
    rules.extend([
        (name("keyword:acc"), Rule::field(F::Ignition)),
        (name(n::ACC), Rule::field(F::Ignition).valid(0.0, 1.0)),
        (name(n::IGNITION), Rule::field(F::Ignition).valid(0.0, 1.0)),
        (name(n::DOOR), Rule::field(F::DoorOpen).valid(0.0, 1.0)),
        (name(n::FUEL1), Rule::field(F::FuelLevelPercent)),
        (name(n::TEMP), Rule::indexed(F::TemperaturesCelsius, 1)),
        (
            name(n::ALARM_TEMP),
            Rule::indexed(F::TemperaturesCelsius, 1),
        ),
        (name(n::RFID), Rule::field(F::DriverId)),
        (name(n::DTC), Rule::field(F::Dtcs)),
        (name(n::OBD_DTC), Rule::field(F::Dtcs)),
        (
            name(n::OBD_ODOMETER),
            Rule::field(F::ObdOdometerMeters).scale(1000.0),
        ),
        (
            name(n::OBD_FUEL_INSTANT),
            Rule::field(F::FuelRateLitersPerHour),
        ),
        (
            name(n::OBD_HOURS),
            Rule::field(F::EngineSeconds).scale(3600.0),
        ),
        (name(n::OBD_SPEED), Rule::field(F::ObdSpeedKmh)),
        (name(n::OBD_LOAD), Rule::field(F::EngineLoadPercent)),
        (
            name(n::OBD_COOLANT),
            Rule::field(F::CoolantTemperatureCelsius),
        ),
        (name(n::OBD_THROTTLE), Rule::field(F::ThrottlePercent)),
        (name(n::OBD_RPM), Rule::field(F::Rpm)),
        (name(n::OBD_BATTERY), Rule::field(F::ExternalPowerVolts)),
        (name(n::CHARGE), Rule::field(F::Charging).valid(0.0, 1.0)),
        (
            name(n::RSSI),
            Rule::field(F::GsmSignalPercent)
                .valid(0.0, 31.0)
                .scale(100.0 / 31.0),
        ),
    ]);
    Profile::new(PROFILE, Protocol::Gps103, rules)
}

/// The built-in profiles; `gps103` is the default.
pub fn profiles() -> Vec<Profile> {
    vec![gps103()]
}

fn event(kind: EventKind) -> TelemetryEvent {
    TelemetryEvent {
        protocol: Protocol::Gps103 as i32,
        kind: kind as i32,
        ..Default::default()
    }
}

/// `---` (or any run of dashes) stands for "nothing" in the alternative form; an empty field
/// everywhere.
fn absent(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'-')
}

/// A value of no documented shape, typed as sent.
fn typed(name: String, v: &[u8]) -> RawValue {
    let digits = |s: &[u8]| !s.is_empty() && s.len() <= 18 && s.iter().all(u8::is_ascii_digit);
    let unsigned = v.first().is_some_and(u8::is_ascii_digit) && digits(v);
    let signed = matches!(v.first(), Some(b'-' | b'+')) && digits(v.get(1..).unwrap_or_default());
    if unsigned {
        if let Some(n) = uint(v) {
            return raw::uint(name, n);
        }
    } else if signed {
        if let Some(n) = int(v) {
            return raw::int(name, n);
        }
    } else if let Some(d) = packet::decimal(v, true) {
        return raw::double(name, d);
    }
    raw::text(name, v)
}

fn field_name(i: usize) -> String {
    let mut s = String::with_capacity(8);
    s.push_str(names::FIELD_PREFIX);
    crate::event::push_decimal(&mut s, i as u64);
    s
}

/// A value at position `i` that does not have its documented shape (or has no documented
/// position): a trouble code under `dtc_name`, else `field<i>`.
fn other(i: usize, v: &[u8], dtc_name: &'static str) -> RawValue {
    if packet::is_dtc(v) {
        raw::text(dtc_name, v)
    } else {
        typed(field_name(i), v)
    }
}

/// An unsigned integer as sent (digits only).
fn uint(v: &[u8]) -> Option<u64> {
    (!v.is_empty() && v.len() <= 18 && v.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(v).ok()?.parse().ok())
        .flatten()
}

/// A signed integer as sent (`+87`, `-5`, `66`).
fn int(v: &[u8]) -> Option<i64> {
    let body = v.strip_prefix(b"+").or(v.strip_prefix(b"-")).unwrap_or(v);
    let n = uint(body)?;
    let n = i64::try_from(n).ok()?;
    Some(if v.first() == Some(&b'-') { -n } else { n })
}

/// What the mapper is fed for a keyword: its rule name and value (see the module doc).
pub fn keyword_rule(keyword: &[u8]) -> Option<(Cow<'static, str>, u64)> {
    let k = std::str::from_utf8(keyword).ok()?;
    Some(match k {
        "" => return None,
        "acc on" => (Cow::Borrowed("keyword:acc"), 1),
        "acc off" => (Cow::Borrowed("keyword:acc"), 0),
        _ if k.starts_with("T:") => (Cow::Borrowed("keyword:T:"), 1),
        _ if k.starts_with("oil") => (Cow::Borrowed("keyword:oil"), 1),
        _ => (Cow::Owned(format!("{}{k}", names::KEYWORD_RULE)), 1),
    })
}

/// The values a keyword carries in it: `T:+28.0`, `oil 51.67`.
fn keyword_values(keyword: &[u8], out: &mut Vec<RawValue>) {
    if let Some(t) = keyword
        .strip_prefix(b"T:")
        .and_then(|t| packet::decimal(t, true))
    {
        out.push(raw::double(names::ALARM_TEMP, t));
    }
    if let Some(f) = keyword
        .strip_prefix(b"oil ")
        .and_then(|f| packet::decimal(f, false))
    {
        out.push(raw::double(names::ALARM_FUEL, f));
    }
}

/// Maps `e`'s raw values, then the keyword (so an `acc on/off` report's own word wins).
fn map(e: &mut TelemetryEvent, profile: &Profile, keyword: &[u8]) {
    map_raw(e, profile, |m| {
        if let Some((rule, v)) = keyword_rule(keyword) {
            m.name(&rule, Value::Uint(v, 1));
        }
    });
}

/// A regular report.
pub fn report_event(
    r: &Report<'_>,
    device_time: Option<Timestamp>,
    profile: &Profile,
) -> TelemetryEvent {
    use names as n;
    let fixed = matches!(r.located, Located::Fix { .. });
    let mut raw_values: Vec<RawValue> = Vec::with_capacity(r.fields.len() + 2);
    for (i, &v) in r.fields.iter().enumerate().skip(1) {
        if v.is_empty() || r.used.contains(&i) {
            continue;
        }
        match i {
            at::KEYWORD => {
                raw_values.push(raw::text(n::KEYWORD, v));
                keyword_values(v, &mut raw_values);
            }
            at::LOCAL_TIME => raw_values.push(raw::text(n::LOCAL_TIME, v)),
            at::PHONE if r.keyword == b"rfid" => raw_values.push(raw::text(n::RFID, v)),
            at::PHONE => raw_values.push(raw::text(n::PHONE, v)),
            at::FIX => raw_values.push(raw::text(n::FIX, v)),
            at::UTC_TIME if fixed => raw_values.push(raw::text(n::UTC_TIME, v)),
            at::SPEED | at::COURSE | at::ALTITUDE => {
                let name = match i {
                    at::SPEED => n::SPEED,
                    at::COURSE => n::COURSE,
                    _ => n::ALTITUDE,
                };
                match packet::decimal(v, i == at::ALTITUDE) {
                    Some(d) => raw_values.push(raw::double(name, d)),
                    None => raw_values.push(other(i, v, n::DTC)),
                }
            }
            at::ACC | at::DOOR => match packet::flag(v) {
                Some(b) => {
                    raw_values.push(raw::uint(if i == at::ACC { n::ACC } else { n::DOOR }, b))
                }
                None => raw_values.push(other(i, v, n::DTC)),
            },
            at::FUEL1 | at::FUEL2 => match packet::percent(v) {
                Some(p) => raw_values.push(raw::double(
                    if i == at::FUEL1 { n::FUEL1 } else { n::FUEL2 },
                    p,
                )),
                None => raw_values.push(other(i, v, n::DTC)),
            },
            at::TEMPERATURE => match packet::decimal(v, true) {
                Some(t) => raw_values.push(raw::double(n::TEMP, t)),
                None => raw_values.push(other(i, v, n::DTC)),
            },
            _ => raw_values.push(other(i, v, n::DTC)),
        }
    }
    let (kind, position, towers) = match r.located {
        Located::Fix {
            latitude,
            longitude,
            valid,
            speed_knots,
            course,
            altitude,
        } => (
            EventKind::Position,
            Some(Position {
                latitude,
                longitude,
                valid,
                speed: speed_knots.map(|k| k * KMH_PER_KNOT),
                course,
                altitude,
                ..Default::default()
            }),
            Vec::new(),
        ),
        Located::Cell { lac, cell_id } => {
            raw_values.push(raw::uint(n::LAC, lac));
            raw_values.push(raw::uint(n::CELL_ID, cell_id));
            (
                EventKind::Lbs,
                None,
                vec![CellTower {
                    mcc: 0,
                    mnc: 0,
                    lac,
                    cell_id,
                    signal: None,
                }],
            )
        }
        Located::Nowhere => (EventKind::Status, None, Vec::new()),
    };
    let mut e = event(kind);
    e.device_time = device_time;
    e.position = position;
    e.cell_towers = towers;
    e.raw = raw_values;
    map(&mut e, profile, r.keyword);
    e
}

/// An `OBD` line: `imei:<id>,OBD,<yymmddhhmmss>,<odometer>,<fuel instant>,<fuel average>,
/// <hours>,<speed>,<load %>,<coolant>,<throttle %>,<rpm>,<battery>,<dtcs…>`.
pub fn obd_event(
    fields: &[&[u8]],
    device_time: Option<Timestamp>,
    profile: &Profile,
) -> TelemetryEvent {
    use names as n;
    let mut raw_values: Vec<RawValue> = Vec::with_capacity(fields.len());
    for (i, &v) in fields.iter().enumerate().skip(2) {
        if v.is_empty() {
            continue;
        }
        let value = match i {
            2 => Some(raw::text(n::LOCAL_TIME, v)),
            3 => uint(v).map(|x| raw::uint(n::OBD_ODOMETER, x)),
            4 => packet::decimal(v, false).map(|x| raw::double(n::OBD_FUEL_INSTANT, x)),
            5 => packet::decimal(v, false).map(|x| raw::double(n::OBD_FUEL_AVERAGE, x)),
            6 => uint(v).map(|x| raw::uint(n::OBD_HOURS, x)),
            7 => uint(v).map(|x| raw::uint(n::OBD_SPEED, x)),
            8 => packet::percent(v).map(|x| raw::double(n::OBD_LOAD, x)),
            9 => int(v).map(|x| raw::int(n::OBD_COOLANT, x)),
            10 => packet::percent(v).map(|x| raw::double(n::OBD_THROTTLE, x)),
            11 => uint(v).map(|x| raw::uint(n::OBD_RPM, x)),
            12 => packet::decimal(v, false).map(|x| raw::double(n::OBD_BATTERY, x)),
            _ => None,
        };
        raw_values.push(value.unwrap_or_else(|| other(i, v, n::OBD_DTC)));
    }
    let mut e = event(EventKind::Status);
    e.device_time = device_time;
    e.raw = raw_values;
    map(&mut e, profile, b"");
    e
}

/// The alternative form (ends in `*`): `imei:<id>,<label>,<event>,<sensor id>,
/// <sensor voltage>,<hhmmss>,<ddmmyy>,<rssi>,<gps status>,<lat>,<lon>,<speed km/h>,<course>,
/// <altitude>,<hdop>,<satellites>,<ignition>,<charge>,<error>,`.
pub fn alternative_event(
    fields: &[&[u8]],
    profile: &Profile,
) -> Result<TelemetryEvent, packet::ParseError> {
    use names as n;
    use packet::ParseError::Field as Bad;
    let f = |i: usize| fields.get(i).copied().unwrap_or_default();
    let time = packet::time_and_date(f(5), f(6)).ok_or(Bad("alternative form: time or date"))?;
    let coordinate = |i: usize, max: f64| packet::decimal(f(i), true).filter(|v| v.abs() <= max);
    let latitude = coordinate(9, 90.0).ok_or(Bad("alternative form: latitude"))?;
    let longitude = coordinate(10, 180.0).ok_or(Bad("alternative form: longitude"))?;
    let status = uint(f(8)).ok_or(Bad("alternative form: GPS status"))?;
    let mut position = Position {
        latitude,
        longitude,
        valid: status > 0,
        ..Default::default()
    };
    let mut raw_values: Vec<RawValue> = Vec::with_capacity(fields.len());
    for (i, &v) in fields.iter().enumerate().skip(1) {
        if v.is_empty() || absent(v) || matches!(i, 5 | 6 | 9 | 10) {
            continue;
        }
        let value = match i {
            1 => Some(raw::text(n::LABEL, v)),
            2 => Some(raw::text(n::EVENT, v)),
            3 => Some(raw::text(n::SENSOR_ID, v)),
            4 => packet::decimal(v, false).map(|x| raw::double(n::SENSOR_VOLTAGE, x)),
            7 => uint(v).map(|x| raw::uint(n::RSSI, x)),
            8 => Some(raw::uint(n::GPS_STATUS, status)),
            11 => match packet::decimal(v, false) {
                Some(s) => {
                    position.speed = Some(s);
                    continue;
                }
                None => None,
            },
            12 => match packet::decimal(v, false).filter(|c| *c <= 360.0) {
                Some(c) => {
                    position.course = Some(c);
                    continue;
                }
                None => None,
            },
            13 => match packet::decimal(v, true) {
                Some(a) => {
                    position.altitude = Some(a);
                    continue;
                }
                None => None,
            },
            14 => match packet::decimal(v, false) {
                Some(h) => {
                    position.hdop = Some(h);
                    continue;
                }
                None => None,
            },
            15 => match uint(v).and_then(|s| u32::try_from(s).ok()) {
                Some(s) => {
                    position.satellites = Some(s);
                    continue;
                }
                None => None,
            },
            16 => packet::flag(v).map(|x| raw::uint(n::IGNITION, x)),
            17 => packet::flag(v).map(|x| raw::uint(n::CHARGE, x)),
            18 => Some(raw::text(n::ERROR, v)),
            _ => None,
        };
        raw_values.push(value.unwrap_or_else(|| other(i, v, n::DTC)));
    }
    let mut e = event(EventKind::Position);
    e.device_time = Some(crate::event::timestamp_secs(time));
    e.position = Some(position);
    e.raw = raw_values;
    map(&mut e, profile, b"");
    Ok(e)
}

/// A heartbeat (`<IMEI>;`).
pub fn heartbeat_event() -> TelemetryEvent {
    event(EventKind::Heartbeat)
}

/// A completed photo.
pub fn file_event(name: String, data: Vec<u8>, device_time: Option<Timestamp>) -> TelemetryEvent {
    let mut e = event(EventKind::File);
    e.device_time = device_time;
    e.file = Some(File {
        name,
        r#type: FILE_IMAGE.to_string(),
        data,
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raw_value::Value as RawV;

    fn report(text: &'static str) -> TelemetryEvent {
        let fields: Vec<&[u8]> = text.as_bytes().split(|&b| b == b',').collect();
        let r = Report::parse("1", fields).unwrap();
        report_event(&r, None, &gps103())
    }

    fn names_of(e: &TelemetryEvent) -> Vec<&str> {
        e.raw.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn a_full_report_maps_onto_the_vocabulary_and_keeps_every_value() {
        let e = report(
            "imei:1,001,0809231929,13554900601,F,055403.000,A,2233.1870,N,11354.3067,E,10.00,30.1,65.43,1,0,10.5%,0.0%,28",
        );
        assert_eq!(e.kind, EventKind::Position as i32);
        let p = e.position.as_ref().unwrap();
        assert!((p.speed.unwrap() - 18.52).abs() < 1e-9, "knots to km/h");
        assert_eq!(
            (p.course, p.altitude, p.valid),
            (Some(30.1), Some(65.43), true)
        );
        assert_eq!(
            names_of(&e),
            [
                "keyword",
                "local_time",
                "phone",
                "fix",
                "utc_time",
                "acc",
                "door",
                "fuel1",
                "fuel2",
                "temp"
            ]
        );
        assert_eq!(e.raw_named("acc"), Some(&RawV::UintValue(1)));
        assert_eq!(e.raw_named("fuel1"), Some(&RawV::DoubleValue(10.5)));
        assert_eq!(
            e.raw_named("phone"),
            Some(&RawV::StringValue("13554900601".into()))
        );
        let t = e.telemetry();
        assert_eq!((t.ignition, t.door_open), (Some(true), Some(false)));
        assert_eq!(t.fuel_level_percent, Some(10.5));
        assert_eq!(t.temperatures_celsius.get(&1), Some(&28.0));
        assert!(e.alarms.is_empty());
    }

    #[test]
    fn keywords_raise_their_alarms_through_rules() {
        for (kw, alarm) in [
            ("help me", Alarm::Sos),
            ("low battery", Alarm::LowBattery),
            ("move", Alarm::Movement),
            ("speed", Alarm::Overspeed),
            ("stockade", Alarm::Geofence),
            ("ac alarm", Alarm::PowerCut),
            ("door alarm", Alarm::Door),
            ("sensor alarm", Alarm::Vibration),
            ("accident alarm", Alarm::Accident),
            ("bonnet alarm", Alarm::Bonnet),
            ("footbrake alarm", Alarm::FootBrake),
            ("DTC", Alarm::Fault),
            ("T:+28.0", Alarm::Temperature),
            ("oil1", Alarm::FuelLeak),
            ("oil 51.67", Alarm::FuelLeak),
        ] {
            let text: &'static str = Box::leak(
                format!("imei:1,{kw},0809231929,,F,055403.000,A,2233.1870,N,11354.3067,E,0.00,,")
                    .into_boxed_str(),
            );
            let e = report(text);
            assert_eq!(e.alarms, vec![alarm as i32], "{kw}");
            assert_eq!(e.kind, EventKind::Alarm as i32, "{kw}");
            assert!(e.position.is_some());
        }
        let e = report("imei:1,T:+28.0,0809231929,,F,055403.000,A,2233.1870,N,11354.3067,E,0.00,,");
        assert_eq!(e.raw_named("alarm_temp"), Some(&RawV::DoubleValue(28.0)));
        assert_eq!(e.telemetry().temperatures_celsius.get(&1), Some(&28.0));
        let e =
            report("imei:1,oil 51.67,0809231929,,F,055403.000,A,2233.1870,N,11354.3067,E,0.00,,");
        assert_eq!(e.raw_named("alarm_fuel"), Some(&RawV::DoubleValue(51.67)));
        assert_eq!(e.telemetry, None, "an oil level has no unit: raw only");
        for quiet in ["tracker", "001", "acc alarm", "vt14", "rfid"] {
            let text: &'static str = Box::leak(
                format!(
                    "imei:1,{quiet},0809231929,,F,055403.000,A,2233.1870,N,11354.3067,E,0.00,,"
                )
                .into_boxed_str(),
            );
            assert!(report(text).alarms.is_empty(), "{quiet}");
        }
    }

    #[test]
    fn acc_on_and_off_say_ignition_whatever_the_acc_field_says() {
        let e = report("imei:1,acc off,150619152221,,F,072218.000,A,5439.8489,N,02518.5945,E,0.00,,,1,1,0.0,0.0,23.0,");
        assert_eq!(e.telemetry().ignition, Some(false));
        let e = report("imei:1,acc on,180508145653,,F,065645.000,A,4729.1497,N,01904.2342,E,0.00,0,,0,,0.00%,,");
        assert_eq!(e.telemetry().ignition, Some(true));
        // Fuel fields without `%` are no percentages: kept as field16/field17.
        let e = report("imei:1,acc off,150619152221,,F,072218.000,A,5439.8489,N,02518.5945,E,0.00,,,1,1,0.0,0.0,23.0,");
        assert_eq!(e.raw_named("field16"), Some(&RawV::DoubleValue(0.0)));
        assert_eq!(e.telemetry().fuel_level_percent, None);
        assert_eq!(e.raw_named("temp"), Some(&RawV::DoubleValue(23.0)));
    }

    #[test]
    fn values_out_of_shape_keep_their_position_and_codes_are_dtcs() {
        let e = report(
            "imei:1,oil1,0809231929,,F,055403.000,A,2233.1870,N,11354.3067,E,0.00,,,,51.6,41.7,",
        );
        assert_eq!(
            names_of(&e),
            [
                "keyword",
                "local_time",
                "fix",
                "utc_time",
                "field15",
                "field16"
            ]
        );
        assert_eq!(e.telemetry().door_open, None);
        let e = report("imei:1,DTC,0809231929,,F,055403.000,A,2233.1870,N,11354.3067,E,0.00,30.1,,1,0,10.5%,P0021,");
        assert_eq!(e.raw_named("dtc"), Some(&RawV::StringValue("P0021".into())));
        assert_eq!(e.telemetry().dtcs, ["P0021"]);
        assert_eq!(e.alarms, vec![Alarm::Fault as i32]);
        let e = report("imei:1,tracker,160629022948,,F,182949.000,A,4043.8839,N,11328.8029,W,65.26,271.82,,1,0,31.37%,51442,");
        assert_eq!(e.raw_named("field17"), Some(&RawV::UintValue(51442)));
    }

    #[test]
    fn no_fix_reports_are_lbs_or_status_and_rfid_is_a_driver() {
        let e = report("imei:1,ac alarm,180404174252,,L,,,296a,,51f7,,,");
        assert_eq!(e.kind, EventKind::Alarm as i32);
        assert_eq!(e.alarms, vec![Alarm::PowerCut as i32]);
        let c = &e.cell_towers[0];
        assert_eq!((c.mcc, c.mnc, c.lac, c.cell_id), (0, 0, 0x296a, 0x51f7));
        assert_eq!(e.raw_named("lac"), Some(&RawV::UintValue(0x296a)));
        let e = report("imei:1,tracker,000000000,,L,,,fa8,,c9af,,,,,0,0,0.00%,,");
        assert_eq!(e.kind, EventKind::Lbs as i32);
        assert_eq!(e.raw_named("fuel1"), Some(&RawV::DoubleValue(0.0)));
        let e = report("imei:1,tracker,000000000,13554900601,L,");
        assert_eq!(e.kind, EventKind::Status as i32);
        assert!(e.position.is_none() && e.cell_towers.is_empty());
        let e = report("imei:1,rfid,160202091347,49121185,F,011344.000,A,0447.7273,N,07538.9934,W,0.00,0,,0,0,0.00%,,");
        assert_eq!(e.telemetry().driver_id.as_deref(), Some("49121185"));
        assert_eq!(
            e.raw_named("rfid"),
            Some(&RawV::StringValue("49121185".into()))
        );
    }

    #[test]
    fn obd_lines() {
        let text = b"imei:359710049090138,OBD,160629022949,51442,0.00,15.88,5632,122,40.39%,95,0.00%,2101,13.80,P0134,P0571,,";
        let fields: Vec<&[u8]> = text.split(|&b| b == b',').collect();
        let e = obd_event(&fields, None, &gps103());
        assert_eq!(e.kind, EventKind::Status as i32);
        let t = e.telemetry();
        assert_eq!(t.obd_odometer_meters, Some(51_442_000.0));
        assert_eq!(t.fuel_rate_liters_per_hour, Some(0.0));
        assert_eq!(t.engine_seconds, Some(5632.0 * 3600.0));
        assert_eq!(t.obd_speed_kmh, Some(122.0));
        assert_eq!(t.engine_load_percent, Some(40.39));
        assert_eq!(t.coolant_temperature_celsius, Some(95.0));
        assert_eq!(t.throttle_percent, Some(0.0));
        assert_eq!(t.rpm, Some(2101.0));
        assert_eq!(t.external_power_volts, Some(13.8));
        assert_eq!(t.dtcs, ["P0134", "P0571"]);
        assert_eq!(
            e.raw_named("obd_fuel_average"),
            Some(&RawV::DoubleValue(15.88))
        );
        let text = b"imei:862106025092216,OBD,170612165656,196043,,145803.9,,000,0.0%,+,0.0%,00000,12.6,,,,";
        let fields: Vec<&[u8]> = text.split(|&b| b == b',').collect();
        let e = obd_event(&fields, None, &gps103());
        assert_eq!(e.raw_named("obd_coolant"), None);
        assert_eq!(e.raw_named("field9"), Some(&RawV::StringValue("+".into())));
        assert_eq!(e.raw_named("obd_coolant"), None);
        assert_eq!(e.telemetry().coolant_temperature_celsius, None);
        let text = b"imei:1,OBD,170605095949,195874,,370.8,808,066,30.0%,+87,13.0%,02444,14.3";
        let fields: Vec<&[u8]> = text.split(|&b| b == b',').collect();
        let e = obd_event(&fields, None, &gps103());
        assert_eq!(e.raw_named("obd_coolant"), Some(&RawV::IntValue(87)));
        assert_eq!(e.raw_named("obd_speed"), Some(&RawV::UintValue(66)));
    }

    #[test]
    fn the_alternative_form() {
        let text = b"imei:861359038609986,Equipo 1,---,------,----,214734,241018,26,1,-33.42317,-70.61930,067,229,0674,1.00,08,0,1,---,";
        let fields: Vec<&[u8]> = text.split(|&b| b == b',').collect();
        let e = alternative_event(&fields, &gps103()).unwrap();
        assert_eq!(e.kind, EventKind::Position as i32);
        let p = e.position.as_ref().unwrap();
        assert_eq!(
            (p.latitude, p.longitude, p.valid),
            (-33.42317, -70.6193, true)
        );
        assert_eq!(
            (p.speed, p.course, p.altitude),
            (Some(67.0), Some(229.0), Some(674.0))
        );
        assert_eq!((p.hdop, p.satellites), (Some(1.0), Some(8)));
        // 2018-10-24 21:47:34 UTC.
        assert_eq!(e.device_time.map(|t| t.seconds), Some(1_540_417_654));
        assert_eq!(
            names_of(&e),
            ["label", "rssi", "gps_status", "ignition", "charge"]
        );
        let t = e.telemetry();
        assert_eq!((t.ignition, t.charging), (Some(false), Some(true)));
        assert!((t.gsm_signal_percent.unwrap() - 2600.0 / 31.0).abs() < 1e-9);
        let mut bad = fields.clone();
        bad[6] = b"321018";
        assert!(alternative_event(&bad, &gps103()).is_err());
    }

    #[test]
    fn operators_override_a_keyword_by_its_rule_name() {
        let mut prof = gps103();
        prof.extend([(
            Key::Name("keyword:acc alarm".into()),
            Rule::alarm(Alarm::Tampering),
        )]);
        let fields: Vec<&[u8]> = b"imei:1,acc alarm,1402231159,,F,065907.000,A,2456.2591,N,06708.8335,E,7.53,76.10,,1,0,0.03%,,"
            .split(|&b| b == b',')
            .collect();
        let r = Report::parse("1", fields).unwrap();
        let e = report_event(&r, None, &prof);
        assert_eq!(e.alarms, vec![Alarm::Tampering as i32]);
    }
}
