//! GT06 values onto the vocabulary: the one place that says which normalized field or alarm
//! a GT06 device value feeds.
//!
//! # Raw names
//!
//! The Concox documents name their fields but number nothing, so every value a packet carries
//! goes into `raw` by name, exactly as sent (unscaled, the packed bytes and words whole). The
//! names follow one scheme:
//!
//! - lower snake case, after the field's name in the Concox documents (`terminal_info`,
//!   `voltage_level`, `gsm_signal`, `alarm`, `language`, `course_status`, `acc`, ...);
//! - **one name, one layout and meaning** in every packet that carries it, so one rule maps
//!   it everywhere. A model whose field of the same name is laid out differently gets the
//!   model's prefix (`x1_terminal_info` is a u16, `terminal_info` a u8);
//! - a number with a unit is named with the unit of the number as sent:
//!   `power_centivolts` (external supply, 0.01 V), `power_decivolts` (0.1 V),
//!   `battery_centivolts` (internal battery), `adc<n>_centivolts`, `odometer_meters`,
//!   `engine_seconds`, `accuracy_centimeters`, `hdop_tenths`;
//! - module values of the modular packets (`0x70`, `0x36`, `0x38`) by the module's name when
//!   it is known, `module_<type as 4 hex digits>` (bytes) otherwise; the OBD text pairs of
//!   `0x8C` as `obd_<id as sent>`;
//! - bytes a layout does not cover: `tail` (after its last field), `status_data` (a model's
//!   undocumented status bytes), `content` (a packet the gateway does not understand).
//!
//! Every event starts with `protocol_number` and (except the CRC-less Wi-Fi form) ends with
//! the packet's `serial`. Positions, cell towers and Wi-Fi access points are typed
//! (`position`, `cell_towers`, `wifi_access_points`), command answers are `text`; they are
//! not repeated in `raw`. [`name`] lists every name.
//!
//! # Rules
//!
//! The mapping is data: a [`Profile`] of rules keyed by raw name. A packed value (the
//! terminal-information byte, the course/status word) feeds several fields, so its rules are
//! keyed `<raw name>.<label>` (`terminal_info.acc`; see `vocab::rules`): each reads the whole
//! value and picks its bits. Operators override or add them in the profile file like any
//! other (`[profiles.gt06.names."terminal_info.oil_cut"]`, `ignore = true` to drop one). When
//! two values of one record feed the same field, the later one in the packet wins (`0x36`'s
//! battery-percentage module over the 0–6 level before it).
//!
//! Ranges are part of the rules too (`valid`): a value outside its documented range is not on
//! the rule's scale (a GSM byte of 27 is no level 0–4) and stays in `raw` only; the ACC bit of
//! the course word means something only when bit 14 says so (`when_bit`).
//!
//! One thing is decided here in code, because it is no rule: the AZ735 alarm status
//! `0xA0`/`0xA1` arms / disarms (a code that sets a field).
//!
//! # Model-specific meanings
//!
//! Some codes mean different things on different models. The default profile `gt06` takes
//! the family's common meaning; built-in profiles carry the known variants, assigned per
//! device (IMEI list or range) in the profile file:
//!
//! - `gt06-lw` (LW series, e.g. LW4G): alarm byte `0x18` = accident (not removing), `0x19` =
//!   harsh acceleration (not low battery);
//! - `gt06-vxt01` (VXT01): terminal-information alarm bits `111` = overspeed (not removing).
//!   The decoder still recognises the VXT01 layout by its length; what its bits mean is the
//!   profile's.
//!
//! ```toml
//! [[devices]]
//! profile = "gt06-lw"
//! imeis = ["868120145233604"]
//! ```
//!
//! Anything else model-specific (a SEEWORLD sending its supply voltage in the alarm byte, say)
//! is an operator profile: `[profiles.seeworld] extends = "gt06"` with
//! `[profiles.seeworld.names.alarm] field = "external_power_volts"`.

use std::borrow::Cow;

use crate::proto::{raw_value, Alarm, Protocol, TelemetryEvent};
use crate::vocab::{Converted, Field, Format, Key, Profile, Rule, Target};

/// Every raw name the GT06 decoders write (see the module doc for the scheme).
pub mod name {
    /// The packet's protocol number (every event).
    pub const PROTOCOL_NUMBER: &str = "protocol_number";
    /// The information serial number (every event but the CRC-less Wi-Fi form).
    pub const SERIAL: &str = "serial";
    /// The content of a packet the gateway does not understand (bytes).
    pub const CONTENT: &str = "content";
    /// Bytes after the last field of a known layout.
    pub const TAIL: &str = "tail";
    /// A model's undocumented status bytes.
    pub const STATUS_DATA: &str = "status_data";
    /// The GPS block's course/status word (u16): bits 0–9 course, 10 north, 11 west,
    /// 12 fixed, 14 "bit 15 is ACC", 15 ACC.
    pub const COURSE_STATUS: &str = "course_status";
    /// Terminal information (u8): bit 0 armed, 1 ACC, 2 charging, 3–5 alarm, 6 GPS
    /// tracking, 7 oil/electricity cut.
    pub const TERMINAL_INFO: &str = "terminal_info";
    /// Voltage level 0–6.
    pub const VOLTAGE_LEVEL: &str = "voltage_level";
    /// The u16 battery value some models send instead of the level (% when ≤ 100).
    pub const BATTERY_LEVEL: &str = "battery_level";
    /// GSM signal 0–4.
    pub const GSM_SIGNAL: &str = "gsm_signal";
    /// The alarm byte of the status block.
    pub const ALARM: &str = "alarm";
    /// The language field (u8, or u16 in the GK310 heartbeat and LBS packets).
    pub const LANGUAGE: &str = "language";
    /// VXT01: the alarm extension byte after the status block.
    pub const ALARM_EXTENSION: &str = "alarm_extension";
    /// ACC as its own byte (non-zero = on).
    pub const ACC: &str = "acc";
    pub const UPLOAD_MODE: &str = "upload_mode";
    pub const GPS_REUPLOAD: &str = "gps_reupload";
    pub const NETWORK_TYPE: &str = "network_type";
    pub const TIMING_ADVANCE: &str = "timing_advance";
    /// External supply, 0.01 V.
    pub const POWER_CENTIVOLTS: &str = "power_centivolts";
    /// External supply, 0.1 V (JC400).
    pub const POWER_DECIVOLTS: &str = "power_decivolts";
    /// Internal battery, 0.01 V.
    pub const BATTERY_CENTIVOLTS: &str = "battery_centivolts";
    /// Internal battery charge, % (module `0x006A`).
    pub const BATTERY_PERCENT: &str = "battery_percent";
    pub const ODOMETER_METERS: &str = "odometer_meters";
    pub const ENGINE_SECONDS: &str = "engine_seconds";
    /// A driver's RFID / iButton card id (bytes; all zero = no card).
    pub const DRIVER_ID: &str = "driver_id";
    pub const DRIVER_ID_VALID: &str = "driver_id_valid";
    /// X1: the driver id as a number (u32, written in decimal).
    pub const X1_DRIVER_ID: &str = "x1_driver_id";
    /// RFID reader text (`RFID:...`).
    pub const RFID_TEXT: &str = "rfid_text";
    /// ICCID: BCD bytes (module `0x0003`) or digits.
    pub const ICCID: &str = "iccid";
    pub const IMSI: &str = "imsi";
    pub const IMEI: &str = "imei";
    /// `0x94` sub-type, its undecoded content, the status text, the door flags.
    pub const INFO_TYPE: &str = "info_type";
    pub const INFO_CONTENT: &str = "info_content";
    pub const STATUS_SYNC: &str = "status_sync";
    /// Door flags (u8): bit 0 door open, bit 2 input 1.
    pub const DOOR_STATUS: &str = "door_status";
    /// Address request: the phone number to send the address to.
    pub const PHONE: &str = "phone";
    /// Command replies: the server flag the reply echoes, the text encoding byte.
    pub const SERVER_FLAG: &str = "server_flag";
    pub const ENCODING: &str = "encoding";
    /// Module values of `0x70`.
    pub const SATELLITES: &str = "satellites";
    pub const SATELLITES_VISIBLE: &str = "satellites_visible";
    pub const HDOP_TENTHS: &str = "hdop_tenths";
    pub const INDEX: &str = "index";
    /// Module `0x002A` (u8): low nibble door, high nibble tamper.
    pub const DOOR_TAMPER: &str = "door_tamper";
    /// Module `0x002B`: the event code.
    pub const EVENT: &str = "event";
    /// Module `0x0032` of `0x36`.
    pub const STARTUP_STATUS: &str = "startup_status";
    /// Module `0x003B` of `0x38`: accuracy, 0.01 m.
    pub const ACCURACY_CENTIMETERS: &str = "accuracy_centimeters";
    /// `0x95` alarm type: the forms with a GPS block, and the time-only short form.
    pub const ALARM_TYPE: &str = "alarm_type";
    pub const SHORT_ALARM_TYPE: &str = "short_alarm_type";
    pub const EVENT_FILES: &str = "event_files";
    /// `0x95`: the u16 of unknown use before the file names.
    pub const RESERVED_WORD: &str = "reserved_word";
    /// `0x9B` pass-through.
    pub const EXTERNAL_DEVICE_TYPE: &str = "external_device_type";
    pub const PASSTHROUGH_DATA: &str = "passthrough_data";
    /// X1 `0x34`.
    pub const X1_DATA_ALARM: &str = "x1_data_alarm";
    pub const X1_TERMINAL_INFO: &str = "x1_terminal_info";
    pub const X1_PORT_INFO: &str = "x1_port_info";
    /// Digital inputs / outputs as bitmasks (X1).
    pub const INPUTS: &str = "inputs";
    pub const OUTPUTS: &str = "outputs";
    /// LW4G: terminal id (bytes) and input status (u16, layout undocumented).
    pub const TERMINAL_ID: &str = "terminal_id";
    pub const INPUT_STATUS: &str = "input_status";
    /// AZ735: the status byte of `0x32`, the alarm status of `0x33`, and the
    /// length-prefixed blocks kept as bytes.
    pub const STATUS: &str = "status";
    pub const ALARM_STATUS: &str = "alarm_status";
    pub const EXTRA_CELLS: &str = "extra_cells";
    pub const WIFI_DATA: &str = "wifi_data";
    pub const RESERVED: &str = "reserved";
    /// `0x8C` OBD: the text when it is not `id=value` pairs (pairs go to `obd_<id>`).
    pub const OBD: &str = "obd";
    pub const OBD_PREFIX: &str = "obd_";
    pub const MODULE_PREFIX: &str = "module_";

    /// `adc<n>_centivolts`.
    pub fn adc_centivolts(n: u32) -> String {
        format!("adc{n}_centivolts")
    }

    /// `module_<type>` for a module this decoder does not know.
    pub fn module(kind: u16) -> String {
        format!("{MODULE_PREFIX}{kind:04x}")
    }
}

/// The terminal-information alarm bits (3–5).
const TERMINAL_ALARMS: &[(u64, Alarm)] = &[
    (0b001, Alarm::Vibration),
    (0b010, Alarm::PowerCut),
    (0b011, Alarm::LowBattery),
    (0b100, Alarm::Sos),
    (0b110, Alarm::Geofence),
    (0b111, Alarm::Removing),
];

/// The status block's alarm byte, the family's meanings (Traccar's `decodeAlarm`).
pub const ALARMS: &[(u64, Alarm)] = &[
    (0x01, Alarm::Sos),
    (0x02, Alarm::PowerCut),
    (0x03, Alarm::Vibration),
    (0x04, Alarm::GeofenceEnter),
    (0x05, Alarm::GeofenceExit),
    (0x06, Alarm::Overspeed),
    (0x09, Alarm::Vibration),
    (0x0C, Alarm::Tampering),
    (0x0E, Alarm::LowBattery),
    (0x0F, Alarm::LowBattery),
    (0x11, Alarm::PowerOff),
    (0x13, Alarm::Tampering),
    (0x14, Alarm::Door),
    // LW series: accident.
    (0x18, Alarm::Removing),
    // LW series: harsh acceleration.
    (0x19, Alarm::LowBattery),
    (0x1A, Alarm::HarshBraking),
    (0x1B, Alarm::HarshCornering),
    (0x23, Alarm::FallDown),
    (0x25, Alarm::Tampering),
    (0x28, Alarm::HarshBraking),
    (0x29, Alarm::HarshAcceleration),
    (0x2A, Alarm::HarshCornering),
    (0x2B, Alarm::HarshCornering),
    (0x2C, Alarm::Accident),
    (0x2E, Alarm::HarshCornering),
    (0x30, Alarm::HarshBraking),
];

/// The LW series' meanings of the codes that differ.
const LW_ALARMS: &[(u64, Alarm)] = &[(0x18, Alarm::Accident), (0x19, Alarm::HarshAcceleration)];

/// `0x95` (JC100 / JC400 dash cameras), the forms with a GPS block.
const DASHCAM_ALARMS: &[(u64, Alarm)] = &[
    (0x01, Alarm::Sos),
    (0x0E, Alarm::LowPower),
    (0x76, Alarm::Temperature),
    (0x80, Alarm::Vibration),
    (0x87, Alarm::Overspeed),
    (0x88, Alarm::PowerCut),
    (0x90, Alarm::HarshAcceleration),
    (0x91, Alarm::HarshBraking),
    (0x92, Alarm::HarshCornering),
    (0x93, Alarm::Accident),
];

/// `0x95` short (time-only) form: the same codes, but 0x01 is a general alarm.
const DASHCAM_SHORT_OVERRIDES: &[(u64, Alarm)] = &[(0x01, Alarm::General)];

/// `0x70` module `0x002B` event codes.
const MODULE_EVENTS: &[(u64, Alarm)] = &[
    (0x11, Alarm::LowBattery),
    (0x12, Alarm::LowPower),
    (0x13, Alarm::PowerCut),
    (0x14, Alarm::Removing),
];

/// AZ735 `0x33` alarm status (0xA0/0xA1 arm and disarm: see [`apply`]).
const AZ735_ALARMS: &[(u64, Alarm)] = &[
    (0xA2, Alarm::LowBattery),
    (0xA3, Alarm::LowBattery),
    (0xA4, Alarm::General),
    (0xA5, Alarm::Door),
];

/// `0x8C` OBD pairs (FM08ABC): values in hundredths.
const OBD: &[(&str, Field)] = &[
    ("2B3", Field::FuelLevelPercent),
    ("2D3", Field::CoolantTemperatureCelsius),
    ("353", Field::ObdSpeedKmh),
    ("363", Field::Rpm),
    ("473", Field::FuelUsedLiters),
];

/// Analog inputs the X1 port-information nibble can announce.
const MAX_ADC: u32 = 15;

fn key(name: &str) -> Key {
    Key::Name(Cow::Owned(name.to_string()))
}

fn labelled(raw: &str, label: &str) -> Key {
    Key::Name(Cow::Owned(format!("{raw}.{label}")))
}

/// The default profile's rules.
fn family() -> Vec<(Key, Rule)> {
    use name as n;
    use Field as F;
    let ti = |label| labelled(n::TERMINAL_INFO, label);
    let mut rules = vec![
        (ti("armed"), Rule::field(F::Armed).bit(0)),
        (ti("acc"), Rule::field(F::Ignition).bit(1)),
        (ti("charging"), Rule::field(F::Charging).bit(2)),
        (ti("alarm"), Rule::alarm_codes(TERMINAL_ALARMS).bits(3, 3)),
        (ti("gps_tracking"), Rule::field(F::GnssTracking).bit(6)),
        (ti("oil_cut"), Rule::field(F::EngineBlocked).bit(7)),
        (
            labelled(n::COURSE_STATUS, "acc"),
            Rule::field(F::Ignition).bit(15).when_bit(14),
        ),
        (key(n::ACC), Rule::field(F::Ignition)),
        (
            key(n::VOLTAGE_LEVEL),
            Rule::field(F::BatteryPercent)
                .valid(0.0, 6.0)
                .scale(100.0 / 6.0),
        ),
        (
            key(n::BATTERY_LEVEL),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            key(n::BATTERY_PERCENT),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            key(n::GSM_SIGNAL),
            Rule::field(F::GsmSignalPercent).valid(0.0, 4.0).scale(25.0),
        ),
        (key(n::ALARM), Rule::alarm_codes(ALARMS)),
        (
            key(n::POWER_CENTIVOLTS),
            Rule::field(F::ExternalPowerVolts).scale(0.01),
        ),
        (
            key(n::POWER_DECIVOLTS),
            Rule::field(F::ExternalPowerVolts).scale(0.1),
        ),
        (
            key(n::BATTERY_CENTIVOLTS),
            Rule::field(F::BatteryVolts).scale(0.01),
        ),
        (key(n::ODOMETER_METERS), Rule::field(F::OdometerMeters)),
        (key(n::ENGINE_SECONDS), Rule::field(F::EngineSeconds)),
        (
            key(n::DRIVER_ID),
            Rule::field(F::DriverId)
                .format(Format::Hex)
                .zero_is_absent(),
        ),
        (
            key(n::X1_DRIVER_ID),
            Rule::field(F::DriverId).zero_is_absent(),
        ),
        (key(n::ICCID), Rule::field(F::Iccid)),
        (
            key(n::SATELLITES_VISIBLE),
            Rule::field(F::SatellitesVisible),
        ),
        (key(n::HDOP_TENTHS), Rule::field(F::Hdop).scale(0.1)),
        (
            key(n::ACCURACY_CENTIMETERS),
            Rule::field(F::AccuracyMeters).scale(0.01),
        ),
        (
            labelled(n::DOOR_STATUS, "door"),
            Rule::field(F::DoorOpen).bit(0),
        ),
        (labelled(n::DOOR_STATUS, "input1"), Rule::input(1).bit(2)),
        (
            labelled(n::DOOR_TAMPER, "door"),
            Rule::field(F::DoorOpen).bits(0, 4),
        ),
        (key(n::EVENT), Rule::alarm_codes(MODULE_EVENTS)),
        (key(n::ALARM_TYPE), Rule::alarm_codes(DASHCAM_ALARMS)),
        (
            key(n::SHORT_ALARM_TYPE),
            alarm_table(DASHCAM_ALARMS, DASHCAM_SHORT_OVERRIDES),
        ),
        (key(n::ALARM_STATUS), Rule::alarm_codes(AZ735_ALARMS)),
        (key(n::INPUTS), Rule::field(F::DigitalInputs)),
        (key(n::OUTPUTS), Rule::field(F::DigitalOutputs)),
        (
            Key::Name(Cow::Owned(format!("{}4A3", n::OBD_PREFIX))),
            Rule::field(F::Vin),
        ),
    ];
    for i in 1..=MAX_ADC {
        rules.push((
            Key::Name(Cow::Owned(n::adc_centivolts(i))),
            Rule::indexed(F::AnalogInputsVolts, i).scale(0.01),
        ));
    }
    for (id, field) in OBD {
        rules.push((
            Key::Name(Cow::Owned(format!("{}{id}", n::OBD_PREFIX))),
            Rule::field(*field).scale(0.01),
        ));
    }
    rules
}

/// `base` with the codes of `over` replaced.
fn alarm_table(base: &[(u64, Alarm)], over: &[(u64, Alarm)]) -> Rule {
    let table: Vec<(u64, Alarm)> = base
        .iter()
        .map(|&(code, a)| {
            let a = over.iter().find(|(c, _)| *c == code).map_or(a, |(_, o)| *o);
            (code, a)
        })
        .collect();
    Rule::new(Target::AlarmCodes(Cow::Owned(table)))
}

/// The built-in profiles; `gt06` is the default.
pub fn profiles() -> Vec<Profile> {
    let default = Profile::new("gt06", Protocol::Gt06, family());
    let mut lw = default.clone();
    lw.name = "gt06-lw".into();
    lw.extend([(key(name::ALARM), alarm_table(ALARMS, LW_ALARMS))]);
    let mut vxt01 = default.clone();
    vxt01.name = "gt06-vxt01".into();
    let mut bits = TERMINAL_ALARMS.to_vec();
    if let Some(x) = bits.iter_mut().find(|(c, _)| *c == 0b111) {
        x.1 = Alarm::Overspeed;
    }
    vxt01.extend([(
        labelled(name::TERMINAL_INFO, "alarm"),
        Rule::new(Target::AlarmCodes(Cow::Owned(bits))).bits(3, 3),
    )]);
    vec![default, lw, vxt01]
}

/// Maps the raw values of a decoded GT06 event through `profile`: `telemetry`, `alarms`
/// (kind ALARM when there is one) and the position's HDOP / accuracy.
pub fn apply(e: &mut TelemetryEvent, profile: &Profile) {
    // AZ735 `0x33`: the alarm status arms and disarms (a code that sets a field, which no
    // rule can say).
    let armed = match e.raw_named(name::ALARM_STATUS) {
        Some(raw_value::Value::UintValue(0xA0)) => Some(true),
        Some(raw_value::Value::UintValue(0xA1)) => Some(false),
        _ => None,
    };
    crate::event::map_raw(e, profile, |m| {
        if let Some(a) = armed {
            m.set(Field::Armed, 0, Converted::Flag(a));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::raw;
    use crate::proto::{EventKind, RawValue};

    use crate::event::raw::position_event as event;

    fn gt06() -> Profile {
        profiles().remove(0)
    }

    #[test]
    fn terminal_info_bits_feed_six_fields_and_an_alarm() {
        // 0b1110_0101: armed, no ACC, charging, alarm 100 (SOS), GPS tracking, oil cut.
        let mut e = event(vec![raw::uint(name::TERMINAL_INFO, 0b1110_0101)]);
        apply(&mut e, &gt06());
        let t = e.telemetry();
        assert_eq!(t.armed, Some(true));
        assert_eq!(t.ignition, Some(false));
        assert_eq!(t.charging, Some(true));
        assert_eq!(t.gnss_tracking, Some(true));
        assert_eq!(t.engine_blocked, Some(true));
        assert_eq!(e.alarms, vec![Alarm::Sos as i32]);
        assert_eq!(e.kind, EventKind::Alarm as i32);
        // No alarm bits: no alarm, the kind stays.
        let mut e = event(vec![raw::uint(name::TERMINAL_INFO, 0b0000_0010)]);
        apply(&mut e, &gt06());
        assert_eq!(e.telemetry().ignition, Some(true));
        assert!(e.alarms.is_empty());
        assert_eq!(e.kind, EventKind::Position as i32);
    }

    #[test]
    fn levels_scale_to_percent_and_out_of_range_values_stay_raw() {
        let mut e = event(vec![
            raw::uint(name::VOLTAGE_LEVEL, 3),
            raw::uint(name::GSM_SIGNAL, 4),
        ]);
        apply(&mut e, &gt06());
        assert_eq!(e.telemetry().battery_percent, Some(50.0));
        assert_eq!(e.telemetry().gsm_signal_percent, Some(100.0));
        let mut e = event(vec![
            raw::uint(name::VOLTAGE_LEVEL, 7),
            raw::uint(name::GSM_SIGNAL, 27),
            raw::uint(name::BATTERY_LEVEL, 0x413E),
        ]);
        apply(&mut e, &gt06());
        assert_eq!(e.telemetry, None);
        let mut e = event(vec![raw::uint(name::BATTERY_LEVEL, 93)]);
        apply(&mut e, &gt06());
        assert_eq!(e.telemetry().battery_percent, Some(93.0));
    }

    #[test]
    fn course_word_acc_only_when_bit_14_says_so() {
        let word = |w: u64| {
            let mut e = event(vec![raw::uint(name::COURSE_STATUS, w)]);
            apply(&mut e, &gt06());
            e.telemetry().ignition
        };
        assert_eq!(word(0x1400 | 0x8000 | 0x4000), Some(true));
        assert_eq!(word(0x1400 | 0x4000), Some(false));
        assert_eq!(word(0x1400 | 0x8000), None);
        assert_eq!(word(0x1400), None);
    }

    #[test]
    fn alarm_byte_codes_and_the_lw_and_vxt01_profiles() {
        let all = profiles();
        let alarms = |p: &Profile, values: Vec<RawValue>| {
            let mut e = event(values);
            apply(&mut e, p);
            e.alarms
                .iter()
                .map(|a| Alarm::try_from(*a).unwrap())
                .collect::<Vec<_>>()
        };
        let code = |c| vec![raw::uint(name::ALARM, c)];
        assert_eq!(alarms(&all[0], code(0x19)), vec![Alarm::LowBattery]);
        assert_eq!(alarms(&all[1], code(0x19)), vec![Alarm::HarshAcceleration]);
        assert_eq!(alarms(&all[0], code(0x18)), vec![Alarm::Removing]);
        assert_eq!(alarms(&all[1], code(0x18)), vec![Alarm::Accident]);
        // The LW profile changes those two codes only.
        assert_eq!(alarms(&all[1], code(0x01)), vec![Alarm::Sos]);
        assert_eq!(alarms(&all[0], code(0x00)), vec![]);
        assert_eq!(alarms(&all[0], code(0xEA)), vec![]);
        let bits = vec![raw::uint(name::TERMINAL_INFO, 0b0011_1000)];
        assert_eq!(alarms(&all[0], bits.clone()), vec![Alarm::Removing]);
        assert_eq!(alarms(&all[2], bits), vec![Alarm::Overspeed]);
        // The terminal bits and the alarm byte report separately: both are kept, once each.
        let both = vec![
            raw::uint(name::TERMINAL_INFO, 0b0010_0000),
            raw::uint(name::ALARM, 0x01),
            raw::uint(name::ALARM, 0x13),
        ];
        assert_eq!(alarms(&all[0], both), vec![Alarm::Sos, Alarm::Tampering]);
        assert_eq!(
            all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["gt06", "gt06-lw", "gt06-vxt01"]
        );
    }

    #[test]
    fn voltages_ids_and_modules() {
        let mut e = event(vec![
            raw::uint(name::POWER_CENTIVOLTS, 1261),
            raw::uint(name::BATTERY_CENTIVOLTS, 402),
            raw::uint(name::POWER_DECIVOLTS, 138),
            raw::bytes(name::DRIVER_ID, vec![0xc3, 0, 0, 1, 0x45, 0x3f, 0x92, 0x01]),
            raw::bytes(name::ICCID, vec![0x89, 0x01, 0x26, 0x08]),
            raw::uint(name::HDOP_TENTHS, 11),
            raw::uint(name::DOOR_STATUS, 0b101),
            raw::uint(name::adc_centivolts(2), 448),
            raw::uint(name::SATELLITES_VISIBLE, 11),
        ]);
        apply(&mut e, &gt06());
        let t = e.telemetry().clone();
        // The later supply value wins (one record carries one of them in practice).
        assert!((t.external_power_volts.unwrap() - 13.8).abs() < 1e-9);
        assert!((t.battery_volts.unwrap() - 4.02).abs() < 1e-9);
        assert_eq!(t.driver_id.as_deref(), Some("C3000001453F9201"));
        assert_eq!(t.iccid.as_deref(), Some("89012608"));
        assert_eq!(t.door_open, Some(true));
        assert_eq!(
            (t.digital_inputs, t.digital_inputs_reported),
            (Some(1), Some(1))
        );
        assert!((t.analog_inputs_volts[&2] - 4.48).abs() < 1e-9);
        assert_eq!(t.satellites_visible, Some(11));
        assert!((e.position.unwrap().hdop.unwrap() - 1.1).abs() < 1e-9);
        // An all-zero card is no driver; X1's numeric id is written in decimal.
        let mut e = event(vec![
            raw::bytes(name::DRIVER_ID, vec![0; 8]),
            raw::uint(name::X1_DRIVER_ID, 4_893_739),
        ]);
        apply(&mut e, &gt06());
        assert_eq!(e.telemetry().driver_id.as_deref(), Some("4893739"));
        let mut e = event(vec![raw::bytes(name::DRIVER_ID, vec![0; 8])]);
        apply(&mut e, &gt06());
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn az735_arms_and_disarms_by_code() {
        for (status, armed, alarm) in [
            (0xA0, Some(true), None),
            (0xA1, Some(false), None),
            (0xA5, None, Some(Alarm::Door)),
        ] {
            let mut e = event(vec![raw::uint(name::ALARM_STATUS, status)]);
            apply(&mut e, &gt06());
            assert_eq!(e.telemetry().armed, armed, "{status:#x}");
            assert_eq!(e.has_alarm(Alarm::Door), alarm.is_some(), "{status:#x}");
        }
        // The 0x32 status byte of the same value is no arming.
        let mut e = event(vec![raw::uint(name::STATUS, 0xA0)]);
        apply(&mut e, &gt06());
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn operators_override_labelled_rules_in_the_profile_file() {
        use crate::vocab::profiles::ProfileSet;
        let s = ProfileSet::from_toml(
            std::path::Path::new("profiles.toml"),
            r#"
            [profiles.mine]
            extends = "gt06"
            [profiles.mine.names."terminal_info.oil_cut"]
            ignore = true
            [profiles.mine.names."terminal_info.bit5"]
            field = "motion"
            bits = [5, 1]
            [profiles.mine.names.alarm]
            field = "external_power_volts"
            "#,
        )
        .unwrap();
        let p = s.get("mine").unwrap();
        let mut e = event(vec![
            raw::uint(name::TERMINAL_INFO, 0b1010_0000),
            raw::uint(name::ALARM, 11),
        ]);
        apply(&mut e, p);
        let t = e.telemetry();
        assert_eq!(t.engine_blocked, None);
        assert_eq!(t.motion, Some(true));
        assert_eq!(t.external_power_volts, Some(11.0));
        // The terminal bits 100 still raise SOS; the alarm byte no longer raises anything.
        assert_eq!(e.alarms, vec![Alarm::Sos as i32]);
    }

    #[test]
    fn every_gate_and_rule_names_a_known_raw_name_or_label() {
        // A typo in a key would silently map nothing: keys must start with a raw name the
        // decoders write.
        let known = [
            name::COURSE_STATUS,
            name::TERMINAL_INFO,
            name::VOLTAGE_LEVEL,
            name::BATTERY_LEVEL,
            name::BATTERY_PERCENT,
            name::GSM_SIGNAL,
            name::ALARM,
            name::ACC,
            name::POWER_CENTIVOLTS,
            name::POWER_DECIVOLTS,
            name::BATTERY_CENTIVOLTS,
            name::ODOMETER_METERS,
            name::ENGINE_SECONDS,
            name::DRIVER_ID,
            name::X1_DRIVER_ID,
            name::ICCID,
            name::SATELLITES_VISIBLE,
            name::HDOP_TENTHS,
            name::ACCURACY_CENTIMETERS,
            name::DOOR_STATUS,
            name::DOOR_TAMPER,
            name::EVENT,
            name::ALARM_TYPE,
            name::SHORT_ALARM_TYPE,
            name::ALARM_STATUS,
            name::INPUTS,
            name::OUTPUTS,
        ];
        for p in profiles() {
            for (k, _) in p.rules() {
                let Key::Name(n) = k else {
                    panic!("{}: numeric key {k:?}", p.name)
                };
                let base = n.split('.').next().unwrap_or_default();
                let ok = known.contains(&base)
                    || base.starts_with(name::OBD_PREFIX)
                    || (1..=MAX_ADC).any(|i| name::adc_centivolts(i) == base);
                assert!(ok, "{}: rule key {n}", p.name);
            }
        }
    }
}
