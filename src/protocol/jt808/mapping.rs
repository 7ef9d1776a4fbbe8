//! JT/T 808 values onto the vocabulary: the one place that says which normalized field or
//! alarm a JT/T 808 device value feeds.
//!
//! # Raw values
//!
//! - The header and fixed fields of a message by name ([`name`]): every event starts with
//!   `message_id` and ends with `serial` (the message serial; a sub-packaged message's first
//!   package's). The location words `alarm` and `status` are whole u32s.
//! - The additional items of a location (附加信息) by their numeric id, exactly as sent: a
//!   standard item of its standard width as an unsigned number (`location::NUMERIC_ITEMS`),
//!   any other as bytes. Sub-items of a vendor `EB` container have the id `EB0000 + sub-id`,
//!   the trailing items of a JT701 report `550000 + id` (see `location`).
//!
//! # Rules
//!
//! The mapping is data: a [`Profile`] of rules. The alarm and status words are packed, so
//! their rules are labelled (`alarm.sos`, `status.acc`; see `vocab::rules`). Items are looked
//! up three ways, so rules can say what each item means however vendors pack it:
//!
//! - by id (`ids.<decimal id>` in the profile file): the standard items, whatever their
//!   length;
//! - by the name `item_<hex id>` (`item_2b`, `item_eb0089`): packed items whose parts feed
//!   several fields, through labelled rules (`item_2b.ad0`, `item_2b.ad1`);
//! - by the name `item_<hex id>_<length>` (`item_e1_1`, `item_eb002d_4`): vendor items whose
//!   layout depends on their length (a one-byte `E1` is a battery level, a two-byte one the
//!   supply voltage in 0.1 V; an `EB` sub-item `002D` of 4 bytes is the supply, of 2 bytes the
//!   battery, in mV).
//!
//! A value outside its documented range (`valid`) is not on the rule's scale and stays in
//! `raw` only. Standard items with no vocabulary field stay in `raw` only: `04` (manual alarm
//! id), `11`–`13` (overspeed, area and route alarm details), `14`–`18` (JT/T 1078 video alarm
//! words), `25` (extended vehicle signals: lights, brake, reverse, …), `2A` (IO status: the
//! sleep flags), `06` of two bytes (2019 carriage temperature, no unit given).
//!
//! The alarm bits follow the mapping the deployed servers use (Traccar's), which devices have
//! been tuned against even where JT/T 808-2013 table 24 says otherwise: bit 7 (main supply
//! under-voltage in the standard) is a low battery, bits 15–17 (reserved in the standard) are
//! vibration and tampering, bit 18 (driving time of the day exceeded in the standard) is a low
//! battery. Bits the standard defines and Traccar leaves out are mapped where the vocabulary
//! has the same meaning: 12 (IC card reader fault) and 24 (VSS fault) are faults, 25 (abnormal
//! fuel) is a fuel leak, 31 (illegal door opening) a door alarm.
//!
//! # Model-specific meanings
//!
//! The default profile `jt808` takes the family's common meaning; built-in profiles carry the
//! known variants, assigned per device (id list or range) in the profile file:
//!
//! - `jt808-padlock` (G-360P, G-508P padlocks): alarm bits 0 and 4 = removing, 1 = tampering,
//!   nothing else;
//! - `jt808-aovx` (AOVX AL300, GL100): alarm bit 16 = movement, nothing else;
//! - `jt808-vl300` (VL300): bits 29/30 are no accident;
//! - `jt808-mv` (MV710G, MV810G): item `57` bit 16 of its last word = door alarm.
//!
//! ```toml
//! [[devices]]
//! profile = "jt808-aovx"
//! imeis = ["671070438773"]
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::proto::{raw_value, Alarm, Protocol, TelemetryEvent};
use crate::vocab::{Field, Format, Key, Mapper, Profile, Rule, Target, Value};

use super::location::{numeric_width, EB_SUB_BASE, JT701_ITEM_BASE};

/// Every raw name the JT/T 808 decoders write.
pub mod name {
    /// The message id (every event, first).
    pub const MESSAGE_ID: &str = "message_id";
    /// The message serial (every event, last).
    pub const SERIAL: &str = "serial";
    /// Location: the alarm flags (u32).
    pub const ALARM: &str = "alarm";
    /// Location: the status word (u32).
    pub const STATUS: &str = "status";
    /// `0704`: 0 normal, 1 blind-area backlog.
    pub const BATCH_TYPE: &str = "batch_type";
    /// Bytes after the last field of a known layout.
    pub const TAIL: &str = "tail";
    /// The body of a message the gateway does not decode (and a heartbeat's payload).
    pub const BODY: &str = "body";
    /// `0100` registration.
    pub const PROVINCE: &str = "province";
    pub const CITY: &str = "city";
    pub const MANUFACTURER: &str = "manufacturer";
    pub const TERMINAL_MODEL: &str = "terminal_model";
    pub const TERMINAL_ID: &str = "terminal_id";
    pub const PLATE_COLOUR: &str = "plate_colour";
    /// The plate (GBK: a string when it is ASCII, bytes otherwise).
    pub const PLATE: &str = "plate";
    /// `0102` (2019): the IMEI and software version (the code itself is not published).
    pub const IMEI: &str = "imei";
    pub const SOFTWARE_VERSION: &str = "software_version";
    /// `0107` terminal attributes.
    pub const TERMINAL_TYPE: &str = "terminal_type";
    /// The SIM's ICCID (BCD digits as a string).
    pub const ICCID: &str = "iccid";
    pub const HARDWARE_VERSION: &str = "hardware_version";
    pub const FIRMWARE_VERSION: &str = "firmware_version";
    pub const GNSS_MODULE: &str = "gnss_module";
    pub const COMM_MODULE: &str = "comm_module";
    /// Answers (`0001`, `0104`, `0201`, `0500`, `1300`): what they answer and the result.
    pub const ANSWERED_SERIAL: &str = "answered_serial";
    pub const ANSWERED_ID: &str = "answered_id";
    pub const RESULT: &str = "result";
    /// `0104`: one parameter, `param_<id as 8 hex digits>` (bytes).
    pub const PARAM_PREFIX: &str = "param_";
    /// `6006`: the text encoding byte before the text.
    pub const TEXT_ENCODING: &str = "text_encoding";
    /// `0702` driver identity.
    pub const CARD_STATUS: &str = "card_status";
    pub const CARD_RESULT: &str = "card_result";
    pub const DRIVER_NAME: &str = "driver_name";
    /// The driver's qualification certificate code (从业资格证编码), 20 bytes.
    pub const DRIVER_CERTIFICATE: &str = "driver_certificate";
    pub const CERTIFICATE_AUTHORITY: &str = "certificate_authority";
    pub const CERTIFICATE_VALIDITY: &str = "certificate_validity";
    /// `0900` pass-through.
    pub const PASSTHROUGH_TYPE: &str = "passthrough_type";
    pub const PASSTHROUGH_DATA: &str = "passthrough_data";
    /// `0800` / `0801` multimedia.
    pub const MEDIA_ID: &str = "media_id";
    pub const MEDIA_TYPE: &str = "media_type";
    pub const MEDIA_FORMAT: &str = "media_format";
    pub const MEDIA_EVENT: &str = "media_event";
    pub const MEDIA_CHANNEL: &str = "media_channel";
    /// `0210` battery report: level %.
    pub const BATTERY_LEVEL: &str = "battery_level";
    /// JT701 `5501`/`5502`.
    pub const JT701_FLAGS: &str = "jt701_flags";
    pub const SIGNAL: &str = "signal";
    pub const ODOMETER_KM: &str = "odometer_km";
    /// JT701 battery: % when ≤ 100, `AA`/`AB` charging.
    pub const BATTERY: &str = "battery";
    pub const CELL_ID: &str = "cell_id";
    pub const LAC: &str = "lac";
    pub const PRODUCT: &str = "product";
    pub const JT701_STATUS: &str = "jt701_status";
    pub const JT701_ALARM: &str = "jt701_alarm";

    /// A field of an `$OBD-RT` line: `obd_rt_<n>`, n from 1.
    pub const OBD_RT_PREFIX: &str = "obd_rt_";
    /// The driver id field of a `GTSL|…` line in a `40` pass-through.
    pub const GTSL_DRIVER_ID: &str = "gtsl_driver_id";

    /// `obd_rt_<n>`.
    pub fn obd_rt(n: usize) -> String {
        format!("{OBD_RT_PREFIX}{n}")
    }

    /// `param_<id>`.
    pub fn param(id: u32) -> String {
        format!("{PARAM_PREFIX}{id:08x}")
    }
}

/// The alarm word's bits as the default profile reads them (label, bit, alarm).
pub const ALARM_BITS: &[(&str, u8, Alarm)] = &[
    ("sos", 0, Alarm::Sos),
    ("overspeed", 1, Alarm::Overspeed),
    ("fatigue", 2, Alarm::FatigueDriving),
    ("gnss_fault", 4, Alarm::Fault),
    ("gnss_antenna_open", 5, Alarm::GpsAntennaCut),
    ("gnss_antenna_short", 6, Alarm::GpsAntennaCut),
    ("low_voltage", 7, Alarm::LowBattery),
    ("power_off", 8, Alarm::PowerOff),
    ("display_fault", 9, Alarm::Fault),
    ("tts_fault", 10, Alarm::Fault),
    ("camera_fault", 11, Alarm::Fault),
    ("ic_card_fault", 12, Alarm::Fault),
    ("vibration", 15, Alarm::Vibration),
    ("tampering", 16, Alarm::Tampering),
    ("tampering2", 17, Alarm::Tampering),
    ("bit18", 18, Alarm::LowBattery),
    ("parking", 19, Alarm::Parking),
    ("area", 20, Alarm::Geofence),
    ("vss_fault", 24, Alarm::Fault),
    ("fuel", 25, Alarm::FuelLeak),
    ("stolen", 26, Alarm::General),
    ("displacement", 28, Alarm::Movement),
    ("collision", 29, Alarm::Accident),
    ("rollover", 30, Alarm::Accident),
    ("door", 31, Alarm::Door),
];

fn key(name: &str) -> Key {
    Key::Name(Cow::Owned(name.to_string()))
}

fn labelled(raw: &str, label: &str) -> Key {
    Key::Name(Cow::Owned(format!("{raw}.{label}")))
}

/// The alias under which an item is offered to named rules: `item_<hex id>`.
pub fn item_alias(id: u32) -> String {
    let mut s = String::new();
    push_alias(&mut s, id);
    s
}

fn push_alias(s: &mut String, id: u32) {
    if id < 0x100 {
        let _ = write!(s, "item_{id:02x}");
    } else {
        let _ = write!(s, "item_{id:06x}");
    }
}

/// `item_<hex id>_<length>`.
pub fn item_len_alias(id: u32, len: usize) -> String {
    let mut s = item_alias(id);
    let _ = write!(s, "_{len}");
    s
}

/// The default profile's rules.
fn family() -> Vec<(Key, Rule)> {
    use name as n;
    use Field as F;
    let st = |label| labelled(n::STATUS, label);
    let id = |i: u32| Key::Id(i);
    let item = |i: u32, label: &str| labelled(&item_alias(i), label);
    let sized = |i: u32, len: usize| key(&item_len_alias(i, len));
    let sized_l = |i: u32, len: usize, label: &str| labelled(&item_len_alias(i, len), label);
    let eb = |sub: u32| EB_SUB_BASE + sub;
    let mut rules = vec![
        (st("acc"), Rule::field(F::Ignition).bit(0)),
        (st("located"), Rule::field(F::GnssTracking).bit(1)),
        // Bit 10 oil circuit cut, bit 11 electric circuit cut.
        (st("blocked"), Rule::field(F::EngineBlocked).bits(10, 2)),
        // Bits 13–17: doors 1–5 open.
        (st("doors"), Rule::field(F::DoorOpen).bits(13, 5)),
        // Reserved in the standard; set by devices that report charging there. A clear bit
        // says nothing.
        (
            st("charging"),
            Rule::field(F::Charging).bit(26).zero_is_absent(),
        ),
        // Standard items.
        (id(0x01), Rule::field(F::OdometerMeters).scale(100.0)),
        // Bit 15 set: a vendor's other unit (Traccar reads a level); not litres.
        (
            id(0x02),
            Rule::field(F::FuelLiters).valid(0.0, 32767.0).scale(0.1),
        ),
        (id(0x03), Rule::field(F::ObdSpeedKmh).scale(0.1)),
        // AD0 in bits 0–15, AD1 in bits 16–31 (the standard names no unit; devices send
        // hundredths of a volt).
        (
            item(0x2B, "ad0"),
            Rule::indexed(F::AnalogInputsVolts, 1)
                .bits(0, 16)
                .scale(0.01),
        ),
        (
            item(0x2B, "ad1"),
            Rule::indexed(F::AnalogInputsVolts, 2)
                .bits(16, 16)
                .scale(0.01),
        ),
        // Wireless signal: CSQ 0–31.
        (
            id(0x30),
            Rule::field(F::GsmSignalPercent)
                .valid(0.0, 31.0)
                .scale(100.0 / 31.0),
        ),
        // Vendor items, by length where vendors disagree.
        // `51`: temperature, sign and magnitude in 0.1 °C (negative values stay raw).
        (
            sized(0x51, 2),
            Rule::indexed(F::TemperaturesCelsius, 1)
                .valid(0.0, 32767.0)
                .scale(0.1),
        ),
        // `56`: battery level in tens of percent, then a reserved byte.
        (
            sized(0x56, 2),
            Rule::field(F::BatteryPercent)
                .valid(0.0, 2815.0)
                .bits(8, 8)
                .scale(10.0),
        ),
        (
            sized_l(0x57, 8, "harsh_acceleration"),
            Rule::alarm(Alarm::HarshAcceleration).bit(56),
        ),
        (
            sized_l(0x57, 8, "harsh_braking"),
            Rule::alarm(Alarm::HarshBraking).bit(57),
        ),
        (
            sized_l(0x57, 8, "harsh_cornering"),
            Rule::alarm(Alarm::HarshCornering).bit(58),
        ),
        (
            sized(0x61, 2),
            Rule::field(F::ExternalPowerVolts).scale(0.01),
        ),
        (sized(0x69, 2), Rule::field(F::BatteryVolts).scale(0.01)),
        // OBD items some models send after an `80` marker.
        (sized(0x81, 2), Rule::field(F::Rpm)),
        (
            sized(0x82, 2),
            Rule::field(F::ExternalPowerVolts).scale(0.1),
        ),
        (
            sized(0x83, 1),
            Rule::field(F::EngineLoadPercent).valid(0.0, 100.0),
        ),
        (
            sized(0x84, 1),
            Rule::field(F::CoolantTemperatureCelsius).offset(-40.0),
        ),
        (
            sized(0x89, 1),
            Rule::field(F::ThrottlePercent).valid(0.0, 100.0),
        ),
        (id(0x8B), Rule::field(F::Vin).format(Format::Ascii)),
        (
            sized(0x8C, 4),
            Rule::field(F::ObdOdometerMeters).scale(100.0),
        ),
        (
            sized(0x8D, 2),
            Rule::field(F::TripOdometerMeters).scale(1000.0),
        ),
        (id(0x94), Rule::field(F::Vin).format(Format::Ascii)),
        (sized(0xAC, 4), Rule::field(F::OdometerMeters)),
        (id(0xBD), Rule::field(F::DriverId).format(Format::Ascii)),
        (id(0xCC), Rule::field(F::Iccid).format(Format::Ascii)),
        (
            sized(0xD3, 2),
            Rule::field(F::ExternalPowerVolts).scale(0.1),
        ),
        // `D4`, `E9`: battery level, FF = charging.
        (
            sized(0xD4, 1),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            sized_l(0xD4, 1, "charging"),
            Rule::field(F::Charging).valid(255.0, 255.0),
        ),
        (
            sized(0xE9, 1),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            sized_l(0xE9, 1, "charging"),
            Rule::field(F::Charging).valid(255.0, 255.0),
        ),
        (
            sized(0xE1, 1),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            sized_l(0xE1, 1, "charging"),
            Rule::field(F::Charging).valid(255.0, 255.0),
        ),
        (
            sized(0xE1, 2),
            Rule::field(F::ExternalPowerVolts).scale(0.1),
        ),
        // `E3`: reserved, battery level, battery in 0.01 V, reserved (the range keeps the
        // level within 100 with the reserved byte clear).
        (
            sized_l(0xE3, 6, "level"),
            Rule::field(F::BatteryPercent)
                .valid(0.0, 0x64_FFFF_FFFF_u64 as f64)
                .bits(32, 8),
        ),
        (
            sized_l(0xE3, 6, "battery"),
            Rule::field(F::BatteryVolts).bits(16, 16).scale(0.01),
        ),
        // `E4`: charge flag (0 or 1), battery level; one rule per flag keeps the level
        // within 100.
        (
            sized_l(0xE4, 2, "level"),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            sized_l(0xE4, 2, "level_flag1"),
            Rule::field(F::BatteryPercent)
                .valid(256.0, 356.0)
                .bits(0, 8),
        ),
        (
            sized(0xF1, 4),
            Rule::field(F::ExternalPowerVolts).scale(0.001),
        ),
        // `F7` (6 bytes): battery in mV, charge status (2, 3 = charging), level (not mapped:
        // no range rule can bound the last byte under the battery's).
        (
            sized_l(0xF7, 6, "battery"),
            Rule::field(F::BatteryVolts).bits(16, 32).scale(0.001),
        ),
        (
            sized_l(0xF7, 6, "charging"),
            Rule::field(F::Charging).bit(9),
        ),
        (
            sized(0xFE, 1),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            sized(0xFE, 2),
            Rule::field(F::ExternalPowerVolts).scale(0.1),
        ),
        (sized(0xFE, 4), Rule::field(F::OdometerMeters)),
        // `EB` sub-items.
        (
            item(eb(0x0089), "power_off"),
            Rule::alarm_codes(&[(0, Alarm::PowerOff)]).bit(0),
        ),
        (
            item(eb(0x0089), "removing"),
            Rule::alarm_codes(&[(0, Alarm::Removing)]).bit(12),
        ),
        (
            item(eb(0x00C5), "vibration"),
            Rule::alarm_codes(&[(0, Alarm::Vibration)]).bit(6),
        ),
        (
            sized(eb(0x002D), 4),
            Rule::field(F::ExternalPowerVolts).scale(0.001),
        ),
        (
            sized(eb(0x002D), 2),
            Rule::field(F::BatteryVolts).scale(0.001),
        ),
        (
            sized(eb(0x00A8), 1),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            sized(eb(0x00E1), 1),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            sized(eb(0x00CE), 2),
            Rule::field(F::ExternalPowerVolts).scale(0.01),
        ),
        // `06` of one byte: a battery level (the 2019 carriage temperature is two bytes).
        (
            sized(0x06, 1),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        // `E5` of one byte: 1 moving, 0 still.
        (sized(0xE5, 1), Rule::field(F::Motion).valid(0.0, 1.0)),
        // `$OBD-RT` fields by position.
        (key(&n::obd_rt(1)), Rule::field(F::ExternalPowerVolts)),
        (key(&n::obd_rt(2)), Rule::field(F::Rpm)),
        (key(&n::obd_rt(3)), Rule::field(F::ObdSpeedKmh)),
        (
            key(&n::obd_rt(4)),
            Rule::field(F::ThrottlePercent).valid(0.0, 100.0),
        ),
        (
            key(&n::obd_rt(5)),
            Rule::field(F::EngineLoadPercent).valid(0.0, 100.0),
        ),
        (
            key(&n::obd_rt(6)),
            Rule::field(F::CoolantTemperatureCelsius),
        ),
        (key(&n::obd_rt(12)), Rule::field(F::FuelUsedLiters)),
        (key(n::GTSL_DRIVER_ID), Rule::field(F::DriverId)),
        // Message fields.
        (key(n::ICCID), Rule::field(F::Iccid)),
        (
            key(n::DRIVER_CERTIFICATE),
            Rule::field(F::DriverId).format(Format::Ascii),
        ),
        (
            key(n::BATTERY_LEVEL),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        // JT701.
        (
            key(n::BATTERY),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            labelled(n::BATTERY, "charging"),
            Rule::field(F::Charging).valid(170.0, 171.0),
        ),
        (
            key(n::SIGNAL),
            Rule::field(F::GsmSignalPercent)
                .valid(0.0, 31.0)
                .scale(100.0 / 31.0),
        ),
        (
            key(n::ODOMETER_KM),
            Rule::field(F::OdometerMeters).scale(1000.0),
        ),
    ];
    for (label, bit, alarm) in ALARM_BITS {
        rules.push((labelled(n::ALARM, label), Rule::alarm(*alarm).bit(*bit)));
    }
    rules
}

/// Rules that drop every default alarm bit, for the variants that read the word otherwise.
fn no_alarm_bits() -> Vec<(Key, Rule)> {
    ALARM_BITS
        .iter()
        .map(|(label, _, _)| (labelled(name::ALARM, label), Rule::new(Target::Ignore)))
        .collect()
}

/// The built-in profiles; `jt808` is the default.
pub fn profiles() -> Vec<Profile> {
    let default = Profile::new("jt808", Protocol::Jt808, family());
    let variant = |n: &str, rules: Vec<(Key, Rule)>| {
        let mut p = default.clone();
        p.name = n.into();
        p.extend(rules);
        p
    };
    let a = |label: &str| labelled(name::ALARM, label);
    let mut padlock = no_alarm_bits();
    padlock.extend([
        (a("padlock_removed"), Rule::alarm(Alarm::Removing).bit(0)),
        (a("padlock_removed2"), Rule::alarm(Alarm::Removing).bit(4)),
        (a("padlock_tampering"), Rule::alarm(Alarm::Tampering).bit(1)),
    ]);
    let mut aovx = no_alarm_bits();
    aovx.push((a("aovx_movement"), Rule::alarm(Alarm::Movement).bit(16)));
    let vl300 = vec![
        (a("collision"), Rule::new(Target::Ignore)),
        (a("rollover"), Rule::new(Target::Ignore)),
    ];
    let mv = vec![(
        labelled(&item_len_alias(0x57, 8), "door"),
        Rule::alarm(Alarm::Door).bit(16),
    )];
    vec![
        variant("jt808", Vec::new()),
        variant("jt808-padlock", padlock),
        variant("jt808-aovx", aovx),
        variant("jt808-vl300", vl300),
        variant("jt808-mv", mv),
    ]
}

/// The width of a raw id's unsigned value (for signed readings), 8 when unknown.
fn width(id: u32) -> u8 {
    u8::try_from(id)
        .ok()
        .and_then(|i| {
            super::location::NUMERIC_ITEMS
                .iter()
                .find(|(x, _)| *x == i)
                .map(|(_, w)| *w as u8)
        })
        .unwrap_or(8)
}

/// Maps the raw values of a decoded event through `profile`: `telemetry`, `alarms` (kind
/// ALARM when there is one). Items go through their id's rule and the rules of their two
/// aliases (see the module doc).
pub fn apply(e: &mut TelemetryEvent, profile: &Profile) {
    let mut m = Mapper::new(profile);
    let mut alias = String::with_capacity(24);
    for r in &e.raw {
        let Some(v) = r.value.as_ref() else { continue };
        let Some(id) = r.id else {
            if let Some(v) = r.as_value() {
                m.name(&r.name, v);
            }
            continue;
        };
        let (value, len) = match v {
            raw_value::Value::UintValue(n) => {
                let w = width(id);
                (Value::Uint(*n, w), usize::from(w))
            }
            raw_value::Value::BytesValue(b) => (Value::Bytes(b), b.len()),
            _ => match r.as_value() {
                Some(v) => (v, 0),
                None => continue,
            },
        };
        m.id(id, value);
        alias.clear();
        push_alias(&mut alias, id);
        m.name(&alias, value);
        let _ = write!(alias, "_{len}");
        m.name(&alias, value);
    }
    m.finish(e);
}

/// Whether `id` is a raw id the decoders write (an item, an `EB` sub-item, a JT701 item).
pub fn is_item_id(id: u32) -> bool {
    id < 0x100
        || (EB_SUB_BASE..EB_SUB_BASE + 0x1_0000).contains(&id)
        || (JT701_ITEM_BASE..JT701_ITEM_BASE + 0x100).contains(&id)
}

/// A standard item's width when its length is standard (re-exported for tests).
pub fn standard_width(id: u8, len: usize) -> Option<usize> {
    numeric_width(id, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::raw;
    use crate::proto::RawValue;

    use crate::event::raw::position_event as event;

    fn by_name(n: &str) -> Profile {
        profiles().into_iter().find(|p| p.name == n).unwrap()
    }

    fn alarms(p: &Profile, values: Vec<RawValue>) -> Vec<Alarm> {
        let mut e = event(values);
        apply(&mut e, p);
        let mut v: Vec<Alarm> = e
            .alarms
            .iter()
            .map(|a| Alarm::try_from(*a).unwrap())
            .collect();
        v.sort_by_key(|a| *a as i32);
        v
    }

    #[test]
    fn status_bits_feed_ignition_fix_blocking_doors_and_charging() {
        let mut e = event(vec![raw::uint(
            name::STATUS,
            0b1 | 0b10 | 1 << 11 | 1 << 16,
        )]);
        apply(&mut e, &by_name("jt808"));
        let t = e.telemetry();
        assert_eq!(t.ignition, Some(true));
        assert_eq!(t.gnss_tracking, Some(true));
        assert_eq!(t.engine_blocked, Some(true));
        assert_eq!(t.door_open, Some(true));
        assert_eq!(t.charging, None, "a clear reserved bit says nothing");
        let mut e = event(vec![raw::uint(name::STATUS, 1 << 26)]);
        apply(&mut e, &by_name("jt808"));
        let t = e.telemetry();
        assert_eq!(
            (t.ignition, t.engine_blocked, t.door_open, t.charging),
            (Some(false), Some(false), Some(false), Some(true))
        );
    }

    #[test]
    fn every_alarm_bit_of_the_default_profile() {
        let p = by_name("jt808");
        for (label, bit, alarm) in ALARM_BITS {
            assert_eq!(
                alarms(&p, vec![raw::uint(name::ALARM, 1 << bit)]),
                vec![*alarm],
                "{label}"
            );
        }
        // Bits the profile leaves alone (3 danger warning, 13/14 pre-warnings, 21–23 route,
        // 27 illegal ignition) raise nothing.
        for bit in [3, 13, 14, 21, 22, 23, 27] {
            assert!(alarms(&p, vec![raw::uint(name::ALARM, 1 << bit)]).is_empty());
        }
        assert_eq!(
            alarms(&p, vec![raw::uint(name::ALARM, 1 << 4 | 1 << 9 | 1)]),
            vec![Alarm::Sos, Alarm::Fault]
        );
    }

    #[test]
    fn model_profiles_read_the_alarm_word_their_way() {
        let word = |bit: u32| vec![raw::uint(name::ALARM, 1 << bit)];
        assert_eq!(
            alarms(&by_name("jt808-aovx"), word(16)),
            vec![Alarm::Movement]
        );
        assert!(alarms(&by_name("jt808-aovx"), word(0)).is_empty());
        assert_eq!(
            alarms(&by_name("jt808-padlock"), word(4)),
            vec![Alarm::Removing]
        );
        assert_eq!(
            alarms(&by_name("jt808-padlock"), word(1)),
            vec![Alarm::Tampering]
        );
        assert!(alarms(&by_name("jt808-vl300"), word(29)).is_empty());
        assert_eq!(alarms(&by_name("jt808-vl300"), word(0)), vec![Alarm::Sos]);
        let door = vec![raw::id_bytes(
            0x57,
            hex::decode("0000000000010000").unwrap(),
        )];
        assert_eq!(
            alarms(&by_name("jt808-mv"), door.clone()),
            vec![Alarm::Door]
        );
        assert!(alarms(&by_name("jt808"), door).is_empty());
    }

    #[test]
    fn items_by_id_and_by_length() {
        let p = by_name("jt808");
        let mut e = event(vec![
            raw::id_uint(0x01, 0x2f5),
            raw::id_uint(0x02, 523),
            raw::id_uint(0x30, 31),
            raw::id_uint(0x2B, 0x0190_04b0),
            raw::id_bytes(0xE1, vec![0x2d]),
            raw::id_bytes(0x82, vec![0x00, 0x8b]),
            raw::id_bytes(0xCC, b"89860000000000000000".to_vec()),
        ]);
        apply(&mut e, &p);
        let t = e.telemetry();
        assert_eq!(t.odometer_meters, Some(75_700.0));
        assert!((t.fuel_liters.unwrap() - 52.3).abs() < 1e-9);
        assert_eq!(t.gsm_signal_percent, Some(100.0));
        assert!((t.analog_inputs_volts[&1] - 12.0).abs() < 1e-9);
        assert!((t.analog_inputs_volts[&2] - 4.0).abs() < 1e-9);
        assert_eq!(t.battery_percent, Some(45.0));
        assert!((t.external_power_volts.unwrap() - 13.9).abs() < 1e-9);
        assert_eq!(t.iccid.as_deref(), Some("89860000000000000000"));
        // The same vendor id with another length means something else.
        let mut e = event(vec![raw::id_bytes(0xE1, vec![0x00, 0x72])]);
        apply(&mut e, &p);
        assert_eq!(e.telemetry().battery_percent, None);
        assert!((e.telemetry().external_power_volts.unwrap() - 11.4).abs() < 1e-9);
        // Out of range: raw only.
        let mut e = event(vec![raw::id_uint(0x30, 99), raw::id_uint(0x02, 0x8001)]);
        apply(&mut e, &p);
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn eb_sub_items_and_inverted_alarm_bits() {
        let p = by_name("jt808");
        let sub = |s: u32, v: &str| raw::id_bytes(EB_SUB_BASE + s, hex::decode(v).unwrap());
        assert!(alarms(&p, vec![sub(0x89, "ffffffff"), sub(0xc5, "ffffffef")]).is_empty());
        assert_eq!(
            alarms(&p, vec![sub(0x89, "ffffefff")]),
            vec![Alarm::Removing]
        );
        assert_eq!(
            alarms(&p, vec![sub(0xc5, "ffffffaf")]),
            vec![Alarm::Vibration]
        );
        let mut e = event(vec![sub(0x2d, "00002db4"), sub(0xa8, "4c")]);
        apply(&mut e, &p);
        assert!((e.telemetry().external_power_volts.unwrap() - 11.7).abs() < 1e-9);
        assert_eq!(e.telemetry().battery_percent, Some(76.0));
        let mut e = event(vec![sub(0x2d, "0fa5")]);
        apply(&mut e, &p);
        assert!((e.telemetry().battery_volts.unwrap() - 4.005).abs() < 1e-9);
        assert_eq!(e.telemetry().external_power_volts, None);
    }

    #[test]
    fn jt701_battery_is_a_level_or_charging() {
        let p = by_name("jt808");
        let mut e = event(vec![raw::uint(name::BATTERY, 0xAA)]);
        apply(&mut e, &p);
        assert_eq!(e.telemetry().charging, Some(true));
        assert_eq!(e.telemetry().battery_percent, None);
        let mut e = event(vec![raw::uint(name::BATTERY, 78)]);
        apply(&mut e, &p);
        assert_eq!(e.telemetry().charging, None);
        assert_eq!(e.telemetry().battery_percent, Some(78.0));
    }

    #[test]
    fn operators_override_labelled_and_sized_rules_in_the_profile_file() {
        use crate::vocab::profiles::ProfileSet;
        let s = ProfileSet::from_toml(
            std::path::Path::new("profiles.toml"),
            r#"
            [profiles.mine]
            extends = "jt808"
            [profiles.mine.names."alarm.vibration"]
            ignore = true
            [profiles.mine.names.item_e1_2]
            field = "battery_volts"
            scale = 0.01
            [profiles.mine.ids.48]
            ignore = true
            "#,
        )
        .unwrap();
        let p = s.get("mine").unwrap();
        let mut e = event(vec![
            raw::uint(name::ALARM, 1 << 15),
            raw::id_bytes(0xE1, vec![0x01, 0x9a]),
            raw::id_uint(0x30, 20),
        ]);
        apply(&mut e, p);
        assert!(e.alarms.is_empty());
        assert!((e.telemetry().battery_volts.unwrap() - 4.1).abs() < 1e-9);
        assert_eq!(e.telemetry().external_power_volts, None);
        assert_eq!(e.telemetry().gsm_signal_percent, None);
    }

    #[test]
    fn every_rule_names_a_known_raw_name_id_or_alias() {
        let known = [
            name::GTSL_DRIVER_ID,
            "obd_rt_1",
            "obd_rt_2",
            "obd_rt_3",
            "obd_rt_4",
            "obd_rt_5",
            "obd_rt_6",
            "obd_rt_12",
            name::ALARM,
            name::STATUS,
            name::ICCID,
            name::DRIVER_CERTIFICATE,
            name::BATTERY_LEVEL,
            name::BATTERY,
            name::SIGNAL,
            name::ODOMETER_KM,
        ];
        for p in profiles() {
            for (k, _) in p.rules() {
                match k {
                    Key::Id(id) => assert!(is_item_id(*id), "{}: id {id}", p.name),
                    Key::Name(n) => {
                        let base = n.split('.').next().unwrap_or_default();
                        let ok = known.contains(&base)
                            || base.strip_prefix("item_").is_some_and(|rest| {
                                let hex = rest.split('_').next().unwrap_or_default();
                                u32::from_str_radix(hex, 16).is_ok_and(is_item_id)
                                    && rest
                                        .split('_')
                                        .nth(1)
                                        .is_none_or(|l| l.parse::<u16>().is_ok())
                            });
                        assert!(ok, "{}: rule key {n}", p.name);
                    }
                }
            }
        }
    }
}
