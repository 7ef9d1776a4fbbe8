//! Every normalized field, once: its name in the schema, what kind of value it holds and its
//! unit. The schema (`proto/avlgate/v1/telemetry.proto`, message `Telemetry`) documents each
//! field for consumers; this table is what the gateway's mapping rules, the operator's profile
//! file and `docs/schema.md` read. A test checks the two list the same fields.

use crate::proto::Telemetry;

/// A normalized field: a `Telemetry` field, or one of the position's quality fields that
/// devices report among their values (HDOP, PDOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Ignition,
    Motion,
    ExternalPowerVolts,
    BatteryVolts,
    BatteryPercent,
    Charging,
    OdometerMeters,
    TripOdometerMeters,
    EngineSeconds,
    GsmSignalPercent,
    GsmSignalDbm,
    GsmOperator,
    Roaming,
    SatellitesVisible,
    DigitalInputs,
    DigitalOutputs,
    AnalogInputsVolts,
    TemperaturesCelsius,
    FuelLevelPercent,
    FuelLiters,
    FuelUsedLiters,
    FuelRateLitersPerHour,
    Rpm,
    CoolantTemperatureCelsius,
    ObdSpeedKmh,
    ObdOdometerMeters,
    ThrottlePercent,
    EngineLoadPercent,
    EngineTemperatureCelsius,
    Vin,
    Dtcs,
    DriverId,
    Iccid,
    Armed,
    EngineBlocked,
    DoorOpen,
    GnssTracking,
    DeviceTemperatureCelsius,
    HumidityPercent,
    Steps,
    HeartRateBpm,
    AccelerationG,
    DeviceMode,
    /// `position.hdop`.
    Hdop,
    /// `position.pdop`.
    Pdop,
    /// `position.accuracy_meters`.
    AccuracyMeters,
}

/// What a field holds, which decides how a device value is converted into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`: a non-zero device value is true.
    Flag,
    /// `double`: the device value × scale + offset.
    Number,
    /// An unsigned integer (× scale + offset, rounded down).
    Count,
    /// A `uint32` bitmask, taken whole (bit 0 = the first input or output).
    Mask,
    /// A string.
    Text,
    /// A list of strings (each device value adds one).
    TextList,
    /// A `map<uint32, double>` keyed by a 1-based index (analog input 2, temperature sensor 3).
    Indexed,
}

/// Where a field lives in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Telemetry,
    Position,
}

/// One field's entry in the vocabulary.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub field: Field,
    /// The proto field name (snake_case); also the name in the operator's profile file.
    pub name: &'static str,
    pub kind: Kind,
    /// The unit, as written in docs (`V`, `m`, `%`, `°C`, ...), or `""` for none.
    pub unit: &'static str,
    pub place: Place,
    /// One line for `docs/schema.md`; the proto comment is the full contract.
    pub summary: &'static str,
}

const fn spec(
    field: Field,
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        field,
        name,
        kind,
        unit,
        place: Place::Telemetry,
        summary,
    }
}

use Field as F;
use Kind as K;

/// The vocabulary, in schema order.
pub static FIELDS: &[Spec] = &[
    spec(F::Ignition, "ignition", K::Flag, "", "ignition (ACC) on"),
    spec(
        F::Motion,
        "motion",
        K::Flag,
        "",
        "the device's own movement flag",
    ),
    spec(
        F::ExternalPowerVolts,
        "external_power_volts",
        K::Number,
        "V",
        "external (vehicle) supply",
    ),
    spec(
        F::BatteryVolts,
        "battery_volts",
        K::Number,
        "V",
        "internal backup battery",
    ),
    spec(
        F::BatteryPercent,
        "battery_percent",
        K::Number,
        "%",
        "internal battery charge, 0–100",
    ),
    spec(
        F::Charging,
        "charging",
        K::Flag,
        "",
        "the internal battery is charging",
    ),
    spec(
        F::OdometerMeters,
        "odometer_meters",
        K::Number,
        "m",
        "total distance",
    ),
    spec(
        F::TripOdometerMeters,
        "trip_odometer_meters",
        K::Number,
        "m",
        "distance of the current trip",
    ),
    spec(
        F::EngineSeconds,
        "engine_seconds",
        K::Number,
        "s",
        "engine hours",
    ),
    spec(
        F::GsmSignalPercent,
        "gsm_signal_percent",
        K::Number,
        "%",
        "cellular signal, 0–100 from the protocol's scale",
    ),
    spec(
        F::GsmSignalDbm,
        "gsm_signal_dbm",
        K::Number,
        "dBm",
        "cellular signal strength",
    ),
    spec(
        F::GsmOperator,
        "gsm_operator",
        K::Text,
        "",
        "registered network, MCC+MNC digits",
    ),
    spec(F::Roaming, "roaming", K::Flag, "", "the device is roaming"),
    spec(
        F::SatellitesVisible,
        "satellites_visible",
        K::Count,
        "",
        "satellites in view",
    ),
    spec(
        F::DigitalInputs,
        "digital_inputs",
        K::Mask,
        "",
        "digital inputs, bit 0 = input 1",
    ),
    spec(
        F::DigitalOutputs,
        "digital_outputs",
        K::Mask,
        "",
        "digital outputs, bit 0 = output 1",
    ),
    spec(
        F::AnalogInputsVolts,
        "analog_inputs_volts",
        K::Indexed,
        "V",
        "analog inputs by number",
    ),
    spec(
        F::TemperaturesCelsius,
        "temperatures_celsius",
        K::Indexed,
        "°C",
        "temperature sensors by number",
    ),
    spec(
        F::FuelLevelPercent,
        "fuel_level_percent",
        K::Number,
        "%",
        "fuel level, 0–100 of the tank",
    ),
    spec(
        F::FuelLiters,
        "fuel_liters",
        K::Number,
        "l",
        "fuel in the tank",
    ),
    spec(
        F::FuelUsedLiters,
        "fuel_used_liters",
        K::Number,
        "l",
        "fuel used since installation or reset",
    ),
    spec(
        F::FuelRateLitersPerHour,
        "fuel_rate_liters_per_hour",
        K::Number,
        "l/h",
        "instant consumption",
    ),
    spec(F::Rpm, "rpm", K::Number, "1/min", "engine speed"),
    spec(
        F::CoolantTemperatureCelsius,
        "coolant_temperature_celsius",
        K::Number,
        "°C",
        "engine coolant temperature",
    ),
    spec(
        F::ObdSpeedKmh,
        "obd_speed_kmh",
        K::Number,
        "km/h",
        "vehicle speed from the vehicle bus",
    ),
    spec(
        F::ObdOdometerMeters,
        "obd_odometer_meters",
        K::Number,
        "m",
        "vehicle odometer from the vehicle bus",
    ),
    spec(
        F::ThrottlePercent,
        "throttle_percent",
        K::Number,
        "%",
        "accelerator pedal position",
    ),
    spec(
        F::EngineLoadPercent,
        "engine_load_percent",
        K::Number,
        "%",
        "engine load",
    ),
    spec(
        F::EngineTemperatureCelsius,
        "engine_temperature_celsius",
        K::Number,
        "°C",
        "engine temperature",
    ),
    spec(F::Vin, "vin", K::Text, "", "vehicle identification number"),
    spec(F::Dtcs, "dtcs", K::TextList, "", "diagnostic trouble codes"),
    spec(
        F::DriverId,
        "driver_id",
        K::Text,
        "",
        "iButton / RFID key / tachograph card",
    ),
    spec(F::Iccid, "iccid", K::Text, "", "SIM card ICCID"),
    spec(F::Armed, "armed", K::Flag, "", "security mode armed"),
    spec(
        F::EngineBlocked,
        "engine_blocked",
        K::Flag,
        "",
        "engine blocked (fuel/power cut active)",
    ),
    spec(F::DoorOpen, "door_open", K::Flag, "", "a door is open"),
    spec(
        F::GnssTracking,
        "gnss_tracking",
        K::Flag,
        "",
        "the GNSS receiver is tracking",
    ),
    spec(
        F::DeviceTemperatureCelsius,
        "device_temperature_celsius",
        K::Number,
        "°C",
        "the device's own temperature",
    ),
    spec(
        F::HumidityPercent,
        "humidity_percent",
        K::Number,
        "%",
        "relative humidity",
    ),
    spec(F::Steps, "steps", K::Count, "", "steps counted"),
    spec(
        F::HeartRateBpm,
        "heart_rate_bpm",
        K::Number,
        "1/min",
        "heart rate",
    ),
    spec(
        F::AccelerationG,
        "acceleration_g",
        K::Number,
        "g",
        "acceleration of a harsh-driving event",
    ),
    spec(
        F::DeviceMode,
        "device_mode",
        K::Count,
        "",
        "the device's work mode, as the protocol numbers it",
    ),
    Spec {
        field: F::Hdop,
        name: "hdop",
        kind: K::Number,
        unit: "",
        place: Place::Position,
        summary: "position.hdop: horizontal dilution of precision",
    },
    Spec {
        field: F::Pdop,
        name: "pdop",
        kind: K::Number,
        unit: "",
        place: Place::Position,
        summary: "position.pdop: position dilution of precision",
    },
    Spec {
        field: F::AccuracyMeters,
        name: "accuracy_meters",
        kind: K::Number,
        unit: "m",
        place: Place::Position,
        summary: "position.accuracy_meters: horizontal accuracy",
    },
];

impl Field {
    pub fn spec(self) -> &'static Spec {
        // FIELDS is in declaration order; the test below keeps it so.
        &FIELDS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn kind(self) -> Kind {
        self.spec().kind
    }

    /// The field of a proto / profile-file name.
    pub fn from_name(name: &str) -> Option<Field> {
        FIELDS.iter().find(|s| s.name == name).map(|s| s.field)
    }
}

/// A converted value, ready for a field of the matching [`Kind`].
#[derive(Debug, Clone, PartialEq)]
pub enum Converted {
    Flag(bool),
    Number(f64),
    Text(String),
}

/// The position's quality fields gathered while mapping a record (applied when the record has
/// a position).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PositionExtras {
    pub hdop: Option<f64>,
    pub pdop: Option<f64>,
    pub accuracy_meters: Option<f64>,
}

/// Writes `v` into `field` (with `index` for indexed fields). A value of the wrong shape for
/// the field (text into a number) is ignored: the rules never produce one, and an operator's
/// profile is checked when it is loaded.
pub fn set(t: &mut Telemetry, p: &mut PositionExtras, field: Field, index: u32, v: Converted) {
    match v {
        Converted::Number(n) => set_number(t, p, field, index, n),
        Converted::Flag(b) => {
            if field.kind() == Kind::Flag {
                set_flag(t, field, b)
            } else {
                set_number(t, p, field, index, f64::from(u8::from(b)))
            }
        }
        Converted::Text(s) => set_text(t, field, s),
    }
}

/// A number into a numeric, count, mask or indexed field (a flag field takes non-zero as
/// true; text fields take whole non-negative numbers in decimal).
pub fn set_number(t: &mut Telemetry, p: &mut PositionExtras, field: Field, index: u32, n: f64) {
    // Counts are whole numbers; a negative or non-finite value is no count.
    let count = || (n.is_finite() && n >= 0.0).then_some(n as u64);
    let small = || count().map(|c| u32::try_from(c).unwrap_or(u32::MAX));
    match field {
        F::ExternalPowerVolts => t.external_power_volts = Some(n),
        F::BatteryVolts => t.battery_volts = Some(n),
        F::BatteryPercent => t.battery_percent = Some(n),
        F::OdometerMeters => t.odometer_meters = Some(n),
        F::TripOdometerMeters => t.trip_odometer_meters = Some(n),
        F::EngineSeconds => t.engine_seconds = Some(n),
        F::GsmSignalPercent => t.gsm_signal_percent = Some(n),
        F::GsmSignalDbm => t.gsm_signal_dbm = Some(n),
        F::SatellitesVisible => t.satellites_visible = small(),
        F::DigitalInputs => t.digital_inputs = small(),
        F::DigitalOutputs => t.digital_outputs = small(),
        F::AnalogInputsVolts => {
            t.analog_inputs_volts.insert(index, n);
        }
        F::TemperaturesCelsius => {
            t.temperatures_celsius.insert(index, n);
        }
        F::FuelLevelPercent => t.fuel_level_percent = Some(n),
        F::FuelLiters => t.fuel_liters = Some(n),
        F::FuelUsedLiters => t.fuel_used_liters = Some(n),
        F::FuelRateLitersPerHour => t.fuel_rate_liters_per_hour = Some(n),
        F::Rpm => t.rpm = Some(n),
        F::CoolantTemperatureCelsius => t.coolant_temperature_celsius = Some(n),
        F::ObdSpeedKmh => t.obd_speed_kmh = Some(n),
        F::ObdOdometerMeters => t.obd_odometer_meters = Some(n),
        F::ThrottlePercent => t.throttle_percent = Some(n),
        F::EngineLoadPercent => t.engine_load_percent = Some(n),
        F::EngineTemperatureCelsius => t.engine_temperature_celsius = Some(n),
        F::DeviceTemperatureCelsius => t.device_temperature_celsius = Some(n),
        F::HumidityPercent => t.humidity_percent = Some(n),
        F::Steps => t.steps = count(),
        F::HeartRateBpm => t.heart_rate_bpm = Some(n),
        F::AccelerationG => t.acceleration_g = Some(n),
        F::DeviceMode => t.device_mode = small(),
        F::Hdop => p.hdop = Some(n),
        F::Pdop => p.pdop = Some(n),
        F::AccuracyMeters => p.accuracy_meters = Some(n),
        F::Ignition
        | F::Motion
        | F::Charging
        | F::Roaming
        | F::Armed
        | F::EngineBlocked
        | F::DoorOpen
        | F::GnssTracking => set_flag(t, field, n != 0.0),
        F::GsmOperator | F::Vin | F::DriverId | F::Iccid | F::Dtcs => {
            if let Some(c) = count().filter(|_| n.fract() == 0.0) {
                set_text(t, field, c.to_string());
            }
        }
    }
}

/// A flag into a flag field (other fields ignore it).
pub fn set_flag(t: &mut Telemetry, field: Field, b: bool) {
    let slot = match field {
        F::Ignition => &mut t.ignition,
        F::Motion => &mut t.motion,
        F::Charging => &mut t.charging,
        F::Roaming => &mut t.roaming,
        F::Armed => &mut t.armed,
        F::EngineBlocked => &mut t.engine_blocked,
        F::DoorOpen => &mut t.door_open,
        F::GnssTracking => &mut t.gnss_tracking,
        _ => return,
    };
    *slot = Some(b);
}

/// Text into a text field (other fields ignore it).
pub fn set_text(t: &mut Telemetry, field: Field, s: String) {
    match field {
        F::GsmOperator => t.gsm_operator = Some(s),
        F::Vin => t.vin = Some(s),
        F::DriverId => t.driver_id = Some(s),
        F::Iccid => t.iccid = Some(s),
        F::Dtcs => t.dtcs.push(s),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_declaration_order() {
        for (i, s) in FIELDS.iter().enumerate() {
            assert_eq!(s.field as usize, i, "{}", s.name);
        }
    }

    /// The vocabulary and the schema's `Telemetry` message list the same fields.
    #[test]
    fn the_table_matches_the_schema() {
        use prost::Message;
        let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/avlgate_descriptor.bin"));
        let fds = prost_types::FileDescriptorSet::decode(&bytes[..]).unwrap();
        let msg = |name: &str| {
            fds.file
                .iter()
                .flat_map(|f| f.message_type.iter())
                .find(|m| m.name() == name)
                .unwrap()
                .field
                .iter()
                .map(|f| f.name().to_string())
                .collect::<Vec<_>>()
        };
        let telemetry = msg("Telemetry");
        // `*_reported` masks are set together with their bitmask, not by rules.
        let ours: Vec<_> = FIELDS
            .iter()
            .filter(|s| s.place == Place::Telemetry)
            .map(|s| s.name.to_string())
            .collect();
        let schema: Vec<_> = telemetry
            .into_iter()
            .filter(|n| !n.ends_with("_reported"))
            .collect();
        assert_eq!(ours, schema);
        let position = msg("Position");
        for s in FIELDS.iter().filter(|s| s.place == Place::Position) {
            assert!(position.iter().any(|n| n == s.name), "{}", s.name);
        }
    }

    #[test]
    fn names_resolve() {
        assert_eq!(Field::from_name("battery_volts"), Some(Field::BatteryVolts));
        assert_eq!(Field::BatteryVolts.name(), "battery_volts");
        assert_eq!(Field::from_name("nope"), None);
    }
}
