//! H02 values onto the vocabulary: the one place that says which normalized field or alarm an
//! H02 device value feeds.
//!
//! # Raw names
//!
//! H02 names almost nothing (its documents number the fields of `*HQ,...#` by position), so
//! every value a message carries goes into `raw` under a name given here, exactly as sent:
//! numbers as numbers (the status word as the `u32` its 8 hex digits spell), and what is not a
//! number, or whose layout is model-specific, as the text the device sent. The scheme:
//!
//! - lower snake case after the field's role in the H02 documents and in Traccar's decoder
//!   (`status`, `validity`, `battery`, `odometer`, `rssi`, ...);
//! - **one name, one layout and meaning** wherever it appears, so one rule maps it
//!   everywhere; a message whose field of the same role has another layout gets the type's
//!   prefix (`v3_battery` is 4 hex digits, `battery` a decimal number);
//! - a number with a unit is named with the unit of the number as sent (`speed_knots`);
//! - fields of a layout nobody documents keep their position: `data<n>` after the status word
//!   of a `V1`-style message (cell data whose MCC/MNC are decimal on some models and hex on
//!   others, ICCIDs, counters), `field<n>` for the fields of a type the gateway does not
//!   decode, `sim_info<n>` for the three SIM fields of `V19`;
//! - bytes of a binary frame after its status word: `tail`.
//!
//! Every text event starts with `maker` (`HQ`, `TH`, `hq`, ...) and `type` (`V1`, `NBR`, ...).
//! Positions, the fix time, cell towers and command answers are typed (`position`,
//! `device_time`, `cell_towers`, `text`) and not repeated in `raw`; where a fix or a time
//! cannot be read (empty fields, a hemisphere of `0`), its fields stay in `raw` as sent
//! (`latitude`, `lat_hemisphere`, `longitude`, `lon_hemisphere`, `time`, `date`). The speed is
//! in both: knots as sent in `raw` (`speed_knots`), km/h in `position.speed`. [`name`] lists
//! every name.
//!
//! # Rules
//!
//! The mapping is data: a [`Profile`] of rules keyed by raw name. The status word is
//! **active-low** (a bit that is clear reports the condition), so its alarm rules read one bit
//! each and raise the alarm on code 0; each has a label (`status.vibration`, ...) so operators
//! override or drop it in the profile file like any other rule
//! (`[profiles.mine.names."status.overspeed"] ignore = true`). Ignition is the one active-high
//! bit (bit 10 set = on). The bit meanings are the family's as Traccar reads them (bit 0
//! vibration, bit 1 or 18 SOS, bit 2 overspeed, bit 19 power cut, bit 10 ignition); where
//! several alarm bits are clear at once every one is raised (Traccar keeps only the first).
//!
//! The binary frames' battery byte is a level on two scales (1–6, also written `F1`–`F6`) or a
//! percentage (7–100), 0 meaning "unknown": four rules with disjoint `valid` ranges read it.
//! (`F1`–`F6` take the 1–6 scale here; Traccar reports them as the percentages 1–6.)

use std::borrow::Cow;

use crate::proto::{Alarm, Protocol, TelemetryEvent};
use crate::vocab::{Field, Key, Profile, Rule};

/// Every raw name the H02 decoders write (see the module doc for the scheme).
pub mod name {
    /// The maker field of a text message (`HQ`, `TH`, `hq`), as sent.
    pub const MAKER: &str = "maker";
    /// The message type (`V1`, `NBR`, `HTBT`, ...), as sent.
    pub const TYPE: &str = "type";
    /// The 32-bit status word (active-low bits; text: 8 hex digits, binary: u32).
    pub const STATUS: &str = "status";
    /// The validity field as sent: `A` fixed, `V` not fixed, `B` (VP1), or the digits of a
    /// "coding scheme" some models send instead (which Traccar takes as fixed).
    pub const VALIDITY: &str = "validity";
    /// Speed over ground in knots, as sent.
    pub const SPEED_KNOTS: &str = "speed_knots";
    /// Fix fields kept as sent when the fix cannot be read.
    pub const LATITUDE: &str = "latitude";
    pub const LAT_HEMISPHERE: &str = "lat_hemisphere";
    pub const LONGITUDE: &str = "longitude";
    pub const LON_HEMISPHERE: &str = "lon_hemisphere";
    /// Speed and course as sent when they are not numbers / when the fix cannot be read.
    pub const SPEED: &str = "speed";
    pub const COURSE: &str = "course";
    /// The extended tail's altitude when there is no fix to put it in.
    pub const ALTITUDE: &str = "altitude";
    /// `hhmmss` / `ddmmyy` as sent when they do not make a device time.
    pub const TIME: &str = "time";
    pub const DATE: &str = "date";
    /// Binary frames: the battery byte (0 unknown, 1–6 level, 7–100 %, `F1`–`F6` level).
    pub const BATTERY_LEVEL: &str = "battery_level";
    /// The decimal field some models put between the course and the date of a `V1`-style
    /// message (Traccar: "battery"); its scale is not documented.
    pub const BATTERY: &str = "battery";
    /// `HTBT` and `LINK`: battery charge, %.
    pub const BATTERY_PERCENT: &str = "battery_percent";
    /// `V3`: the battery field, 4 hex digits (scale not documented).
    pub const V3_BATTERY: &str = "v3_battery";
    /// `V3`: the reboot-information field.
    pub const REBOOT: &str = "reboot";
    /// `V19`: the SIM fields between the date and the status word (a phone number or an IP
    /// address, an ICCID).
    pub const SIM_INFO_PREFIX: &str = "sim_info";
    /// The extended `V1` tail: odometer, temperature, fuel, altitude (typed), LAC and cell id.
    pub const ODOMETER: &str = "odometer";
    pub const TEMPERATURE: &str = "temperature";
    pub const FUEL: &str = "fuel";
    /// LAC and cell id of the extended `V1` tail (hex; no MCC/MNC is sent with them).
    pub const LAC: &str = "lac";
    pub const CID: &str = "cid";
    /// Fields after the status word of a `V1`-style message, in order.
    pub const DATA_PREFIX: &str = "data";
    /// Fields of a type the gateway does not decode (and of heartbeats), in order.
    pub const FIELD_PREFIX: &str = "field";
    /// `V4` command confirmations: the command name, the result fields (joined with `,`), the
    /// command's own time the device echoes.
    pub const COMMAND: &str = "command";
    pub const RESULT: &str = "result";
    pub const COMMAND_TIME: &str = "command_time";
    /// `LINK`: GSM signal (0–31), satellites, pedometer steps, turnovers.
    pub const RSSI: &str = "rssi";
    pub const SATELLITES: &str = "satellites";
    pub const STEPS: &str = "steps";
    pub const TURNOVERS: &str = "turnovers";
    /// `NBR`: the GSM delay field and the announced cell count; `V3`: the cell count.
    pub const GSM_DELAY: &str = "gsm_delay";
    pub const CELL_COUNT: &str = "cell_count";
    /// `V3`: the third value of each cell (meaning not documented).
    pub const CELL_FIELD3_SUFFIX: &str = "_field3";
    /// Binary frames: the bytes after the status word.
    pub const TAIL: &str = "tail";
    /// An `SMS` answer that is not UTF-8 (its lossy text is in `text`).
    pub const SMS_BYTES: &str = "sms_bytes";

    /// `<prefix><n>` (`data3`, `field1`, `sim_info2`).
    pub fn numbered(prefix: &str, n: usize) -> String {
        format!("{prefix}{n}")
    }

    /// `cell<n>_field3` (`V3`).
    pub fn cell_field3(n: usize) -> String {
        format!("cell{n}{CELL_FIELD3_SUFFIX}")
    }
}

/// Active-low alarm bits of the status word: (label, bit, alarm).
pub const STATUS_ALARMS: &[(&str, u8, Alarm)] = &[
    ("vibration", 0, Alarm::Vibration),
    ("sos", 1, Alarm::Sos),
    ("overspeed", 2, Alarm::Overspeed),
    ("sos_bit18", 18, Alarm::Sos),
    ("power_cut", 19, Alarm::PowerCut),
];

/// Ignition: bit 10 set = on.
pub const IGNITION_BIT: u8 = 10;

const VIBRATION: &[(u64, Alarm)] = &[(0, Alarm::Vibration)];
const SOS: &[(u64, Alarm)] = &[(0, Alarm::Sos)];
const OVERSPEED: &[(u64, Alarm)] = &[(0, Alarm::Overspeed)];
const POWER_CUT: &[(u64, Alarm)] = &[(0, Alarm::PowerCut)];

/// The code table that raises `alarm` when its bit reads 0 (rules hold `'static` tables).
fn active_low(alarm: Alarm) -> &'static [(u64, Alarm)] {
    match alarm {
        Alarm::Vibration => VIBRATION,
        Alarm::Sos => SOS,
        Alarm::Overspeed => OVERSPEED,
        _ => POWER_CUT,
    }
}

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
    let mut rules: Vec<(Key, Rule)> = STATUS_ALARMS
        .iter()
        .map(|&(label, bit, alarm)| {
            (
                labelled(n::STATUS, label),
                Rule::alarm_codes(active_low(alarm)).bit(bit),
            )
        })
        .collect();
    rules.extend([
        (
            labelled(n::STATUS, "ignition"),
            Rule::field(F::Ignition).bit(IGNITION_BIT),
        ),
        // The battery byte: 1–3 → 0/10/20 %, 4–6 → 60/80/100 %, 7–100 as is, F1–F6 the 1–6
        // scale again.
        (
            labelled(n::BATTERY_LEVEL, "level_low"),
            Rule::field(F::BatteryPercent)
                .valid(1.0, 3.0)
                .scale(10.0)
                .offset(-10.0),
        ),
        (
            labelled(n::BATTERY_LEVEL, "level_high"),
            Rule::field(F::BatteryPercent)
                .valid(4.0, 6.0)
                .scale(20.0)
                .offset(-20.0),
        ),
        (
            labelled(n::BATTERY_LEVEL, "percent"),
            Rule::field(F::BatteryPercent).valid(7.0, 100.0),
        ),
        (
            labelled(n::BATTERY_LEVEL, "f_level_low"),
            Rule::field(F::BatteryPercent)
                .valid(241.0, 243.0)
                .scale(10.0)
                .offset(-2410.0),
        ),
        (
            labelled(n::BATTERY_LEVEL, "f_level_high"),
            Rule::field(F::BatteryPercent)
                .valid(244.0, 246.0)
                .scale(20.0)
                .offset(-4820.0),
        ),
        (
            key(n::BATTERY_PERCENT),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            key(n::RSSI),
            Rule::field(F::GsmSignalPercent)
                .valid(0.0, 31.0)
                .scale(100.0 / 31.0),
        ),
        (key(n::SATELLITES), Rule::field(F::SatellitesVisible)),
        (key(n::STEPS), Rule::field(F::Steps)),
        (key(n::ODOMETER), Rule::field(F::OdometerMeters)),
        (
            key(n::TEMPERATURE),
            Rule::indexed(F::TemperaturesCelsius, 1),
        ),
    ]);
    rules
}

/// The built-in profiles; `h02` is the default.
pub fn profiles() -> Vec<Profile> {
    vec![Profile::new("h02", Protocol::H02, family())]
}

/// Maps the raw values of a decoded H02 event through `profile`: `telemetry`, `alarms` (kind
/// ALARM when there is one).
pub fn apply(e: &mut TelemetryEvent, profile: &Profile) {
    crate::event::map_raw(e, profile, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::raw;
    use crate::proto::EventKind;

    use crate::event::raw::position_event as event;

    fn h02() -> Profile {
        profiles().remove(0)
    }

    fn alarms(e: &TelemetryEvent) -> Vec<Alarm> {
        let mut v: Vec<Alarm> = e
            .alarms
            .iter()
            .map(|a| Alarm::try_from(*a).unwrap())
            .collect();
        v.sort_by_key(|a| *a as i32);
        v
    }

    #[test]
    fn an_all_ones_status_word_raises_nothing_and_bit_10_is_ignition() {
        let mut e = event(vec![raw::uint(name::STATUS, 0xFFFF_FFFF)]);
        apply(&mut e, &h02());
        assert!(e.alarms.is_empty());
        assert_eq!(e.kind, EventKind::Position as i32);
        assert_eq!(e.telemetry().ignition, Some(true));
        // The usual word of a parked car: bit 10 clear, nothing else.
        let mut e = event(vec![raw::uint(name::STATUS, 0xFFFF_FBFF)]);
        apply(&mut e, &h02());
        assert!(e.alarms.is_empty());
        assert_eq!(e.telemetry().ignition, Some(false));
    }

    #[test]
    fn each_clear_alarm_bit_raises_its_alarm() {
        for (bit, want) in [
            (0, Alarm::Vibration),
            (1, Alarm::Sos),
            (18, Alarm::Sos),
            (2, Alarm::Overspeed),
            (19, Alarm::PowerCut),
        ] {
            let mut e = event(vec![raw::uint(name::STATUS, 0xFFFF_FFFF & !(1u64 << bit))]);
            apply(&mut e, &h02());
            assert_eq!(alarms(&e), vec![want], "bit {bit}");
            assert_eq!(e.kind, EventKind::Alarm as i32);
        }
        // Bits without a documented alarm raise nothing.
        for bit in [3, 4, 9, 11, 17, 20, 31] {
            let mut e = event(vec![raw::uint(name::STATUS, 0xFFFF_FFFF & !(1u64 << bit))]);
            apply(&mut e, &h02());
            assert!(e.alarms.is_empty(), "bit {bit}");
        }
        // Several at once: every one (SOS once).
        let mut e = event(vec![raw::uint(name::STATUS, 0xFFF3_FFF8)]);
        apply(&mut e, &h02());
        assert_eq!(
            alarms(&e),
            vec![
                Alarm::Sos,
                Alarm::Vibration,
                Alarm::Overspeed,
                Alarm::PowerCut
            ]
        );
    }

    #[test]
    fn the_battery_byte_reads_on_its_four_scales() {
        let level = |v: u64| {
            let mut e = event(vec![raw::uint(name::BATTERY_LEVEL, v)]);
            apply(&mut e, &h02());
            e.telemetry().battery_percent
        };
        assert_eq!(level(0), None);
        assert_eq!(level(1), Some(0.0));
        assert_eq!(level(3), Some(20.0));
        assert_eq!(level(4), Some(60.0));
        assert_eq!(level(6), Some(100.0));
        assert_eq!(level(7), Some(7.0));
        assert_eq!(level(100), Some(100.0));
        assert_eq!(level(101), None);
        assert_eq!(level(0xF1), Some(0.0));
        assert_eq!(level(0xF3), Some(20.0));
        assert_eq!(level(0xF4), Some(60.0));
        assert_eq!(level(0xF6), Some(100.0));
        assert_eq!(level(0xF7), None);
        assert_eq!(level(0xFF), None);
    }

    #[test]
    fn heartbeat_and_link_values() {
        let mut e = event(vec![
            raw::uint(name::BATTERY_PERCENT, 84),
            raw::uint(name::RSSI, 31),
            raw::uint(name::SATELLITES, 7),
            raw::uint(name::STEPS, 1200),
            raw::uint(name::ODOMETER, 69_129_336),
            raw::int(name::TEMPERATURE, -5),
        ]);
        apply(&mut e, &h02());
        let t = e.telemetry();
        assert_eq!(t.battery_percent, Some(84.0));
        assert!((t.gsm_signal_percent.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(t.satellites_visible, Some(7));
        assert_eq!(t.steps, Some(1200));
        assert_eq!(t.odometer_meters, Some(69_129_336.0));
        assert_eq!(t.temperatures_celsius[&1], -5.0);
        // Out of range: raw only.
        let mut e = event(vec![
            raw::uint(name::BATTERY_PERCENT, 255),
            raw::uint(name::RSSI, 99),
        ]);
        apply(&mut e, &h02());
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn operators_override_the_labelled_status_rules() {
        use crate::vocab::profiles::ProfileSet;
        let s = ProfileSet::from_toml(
            std::path::Path::new("profiles.toml"),
            r#"
            [profiles.mine]
            extends = "h02"
            [profiles.mine.names."status.overspeed"]
            ignore = true
            [profiles.mine.names."status.door"]
            field = "door_open"
            bits = [3, 1]
            "#,
        )
        .unwrap();
        let p = s.get("mine").unwrap();
        let mut e = event(vec![raw::uint(name::STATUS, 0xFFFF_FFFB)]);
        apply(&mut e, p);
        assert!(e.alarms.is_empty(), "overspeed dropped");
        assert_eq!(e.telemetry().door_open, Some(true));
    }

    #[test]
    fn every_rule_names_a_raw_name_the_decoders_write() {
        let known = [
            name::STATUS,
            name::BATTERY_LEVEL,
            name::BATTERY_PERCENT,
            name::RSSI,
            name::SATELLITES,
            name::STEPS,
            name::ODOMETER,
            name::TEMPERATURE,
        ];
        for p in profiles() {
            for (k, _) in p.rules() {
                let Key::Name(n) = k else {
                    panic!("{}: numeric key {k:?}", p.name)
                };
                let base = n.split('.').next().unwrap_or_default();
                assert!(known.contains(&base), "{}: rule key {n}", p.name);
            }
        }
    }
}
