//! Queclink values onto the vocabulary: the one place that says which normalized field or
//! alarm a Queclink value feeds, and how a decoded report becomes events.
//!
//! # Raw names
//!
//! The @Track documents name their fields and number nothing, so every value goes into
//! `raw` by name, exactly as sent, typed as the document declares it (decimal → uint/sint,
//! with a fraction → double, hex → uint, anything else and any value that does not read as
//! declared → the text as sent). Names follow the documents' field names in snake case, with
//! the unit of the number as sent where it has one (`external_power_mv`, `mileage_km`), and
//! **one name, one meaning**: the `<Report ID/Report Type>` field means something different per
//! message type, so it is `<type>_report_id_type` (`geo_report_id_type`), and its rules are
//! per type too. Peripheral sections of `GTERI` are numbered (`one_wire_2_temperature`,
//! `ble_1_mac`), CAN and OBD values are prefixed `can_` / `obd_`.
//!
//! Compact (Protocol Pro) data items are kept by their numeric data id (`RawValue.id`) with
//! their bytes; their header fields by name.
//!
//! Positions, cell towers and Wi-Fi access points are typed (`position`, `cell_towers`,
//! `wifi_access_points`) and not repeated in `raw`; a command answer is `text`. The report
//! type itself is kept as sent in `header` (`+BUFF:GTFRI`). Fields the decoder cannot name
//! are kept under their place, `field_<i>` / `tail_<k>` (see `text`). [`name`] lists every
//! name.
//!
//! # Rules
//!
//! The mapping is data: the [`Profile`] below, keyed by raw name; a packed value feeds
//! several fields through labelled rules (`device_status.ignition_on`). Operators override
//! them in the profile file (`[profiles.queclink.names."device_status.in1"]`).
//!
//! Facts that are not raw values are decided here in code:
//! - **the message type**: `GTSOS` is an SOS, `GTPFA` a power-off, `GTIGN` ignition on
//!   (the table [`TYPE_ALARMS`] and [`type_facts`]);
//! - `GTIGL`'s ignition polarity, which is the model's (CV200 inverted, trap of the
//!   documents);
//! - values whose text carries a unit prefix or a `h:m:s` form the rule language cannot read
//!   (`hour_meter_count` `00123:04:44`, `can_total_distance` `H20460` hectometres,
//!   `can_fuel_level` `L87.40` litres / `P84.00` percent, `can_fuel_consumption`
//!   `L/H1.5`, `obd_dtcs` as SAE J2012 codes).

use std::borrow::Cow;

use crate::event::{map_raw, timestamp_secs};
use crate::proto::{raw_value, Alarm, EventKind, Protocol, TelemetryEvent};
use crate::vocab::{Converted, Field, Key, Mapper, Profile, Rule};

use super::report::{Class, Report};

/// Every raw name the Queclink decoders write.
pub mod name {
    // --- every message -------------------------------------------------------------------
    /// The message header exactly as sent (`+RESP:GTFRI`, `+BUFF:GTERI`, `+ACK:GTRTO`,
    /// `+RSP`): the report type and whether it came from the buffer.
    pub const HEADER: &str = "header";
    pub const PROTOCOL_VERSION: &str = "protocol_version";
    pub const DEVICE_NAME: &str = "device_name";
    pub const VIN: &str = "vin";
    /// `YYYYMMDDHHMMSS` as sent (the device's clock; its zone is not guaranteed).
    pub const SEND_TIME: &str = "send_time";
    /// The message's count number (4 hex digits as sent), which the SACK echoes.
    pub const COUNT_NUMBER: &str = "count_number";
    /// Number of position blocks.
    pub const NUMBER: &str = "number";
    /// Unnamed fields: `field_<comma index>` before the positions, `tail_<k>` after them.
    pub const FIELD_PREFIX: &str = "field_";
    pub const TAIL_PREFIX: &str = "tail_";
    /// Command answers: their parameters (`parameter_1`, …) and the echoed serial.
    pub const PARAMETER_PREFIX: &str = "parameter_";
    pub const SERIAL_NUMBER: &str = "serial_number";

    // --- position blocks -----------------------------------------------------------------
    /// HDOP 1–50; 0 = no fix now (the position is the last known one).
    pub const GPS_ACCURACY: &str = "gps_accuracy";
    /// Motion values of a block without coordinates.
    pub const SPEED_KMH: &str = "speed_kmh";
    pub const AZIMUTH: &str = "azimuth";
    pub const ALTITUDE_M: &str = "altitude_m";
    pub const GPS_UTC_TIME: &str = "gps_utc_time";
    /// `0` coordinates of a block without any fix, as sent.
    pub const LONGITUDE: &str = "longitude";
    pub const LATITUDE: &str = "latitude";
    /// The field after a block's cell, by what it holds on the model.
    pub const POSITION_APPEND_MASK: &str = "position_append_mask";
    pub const POSITION_RESERVED: &str = "position_reserved";
    pub const ODO_MILEAGE_KM: &str = "odo_mileage_km";
    pub const SATELLITES: &str = "satellites";
    pub const SATELLITES_IN_VIEW: &str = "satellites_in_view";
    pub const GNSS_TRIGGER_TYPE: &str = "gnss_trigger_type";
    pub const GNSS_JAMMING_STATE: &str = "gnss_jamming_state";
    pub const CSQ_RSSI: &str = "csq_rssi";
    pub const CSQ_BER: &str = "csq_ber";

    // --- report head and tail ------------------------------------------------------------
    pub const EXTERNAL_POWER_MV: &str = "external_power_mv";
    /// `<type>_report_id_type` (one hex byte: id high nibble, type low nibble) or, on models
    /// that send them apart, `<type>_report_id` and `<type>_report_type`.
    pub const REPORT_ID_TYPE: &str = "report_id_type";
    pub const REPORT_ID: &str = "report_id";
    pub const REPORT_TYPE: &str = "report_type";
    pub const ERI_MASK: &str = "eri_mask";
    pub const MILEAGE_KM: &str = "mileage_km";
    /// `HHHHH:MM:SS`.
    pub const HOUR_METER_COUNT: &str = "hour_meter_count";
    pub const BACKUP_BATTERY_PERCENT: &str = "backup_battery_percent";
    pub const BATTERY_PERCENT: &str = "battery_percent";
    /// Vehicle trackers' device status (hex): motion byte, input byte, output byte (and the
    /// EIO100 bytes before them when 10 digits).
    pub const DEVICE_STATUS: &str = "device_status";
    /// The motion byte alone (`GTINF`, `GTSTT`, binary): 11/12 ignition off rest/motion,
    /// 16 tow, 1A fake tow, 21/22 ignition on rest/motion, 41/42 no ignition signal.
    pub const MOTION_STATUS: &str = "motion_status";
    pub const DIGITAL_INPUTS: &str = "digital_inputs";
    pub const DIGITAL_OUTPUTS: &str = "digital_outputs";
    pub const UART_DEVICE_TYPE: &str = "uart_device_type";
    pub const ENGINE_RPM: &str = "engine_rpm";
    pub const FUEL_CONSUMPTION: &str = "fuel_consumption";
    pub const FUEL_LEVEL_INPUT: &str = "fuel_level_input";
    pub const BATTERY_MV: &str = "battery_mv";
    pub const MODE_SELECTION: &str = "mode_selection";
    pub const MOVEMENT_STATUS: &str = "movement_status";
    pub const DEVICE_TEMPERATURE: &str = "device_temperature";

    // --- GTERI sections ------------------------------------------------------------------
    pub const DIGITAL_FUEL_SENSOR_DATA: &str = "digital_fuel_sensor_data";
    pub const ONE_WIRE_COUNT: &str = "one_wire_count";
    pub const FUEL_SENSOR_COUNT: &str = "fuel_sensor_count";
    pub const AC100_COUNT: &str = "ac100_count";
    pub const BLE_COUNT: &str = "ble_count";

    /// `one_wire_<i>_<what>` (`id`, `type`, `temperature` for type 1 — a two's-complement
    /// reading in 1/16 °C —, `data` otherwise, e.g. an iButton's presence code).
    pub fn one_wire(i: u32, what: &str) -> String {
        format!("one_wire_{i}_{what}")
    }
    /// `fuel_sensor_<i>_<what>` (`type`, `uart_id`, `data`, `percent`, `volume`).
    pub fn fuel_sensor(i: u32, what: &str) -> String {
        format!("fuel_sensor_{i}_{what}")
    }
    /// `ac100_<i>_<what>` (`serial`, `type`, `temperature`, `humidity`).
    pub fn ac100(i: u32, what: &str) -> String {
        format!("ac100_{i}_{what}")
    }
    /// `ble_<i>_<what>`: a Bluetooth accessory's fields by its append mask.
    pub fn ble(i: u32, what: &str) -> String {
        format!("ble_{i}_{what}")
    }
    /// `analog_input_<n>`: millivolts (or `F<n>` when the input reads a fuel sensor).
    pub fn analog_input(n: u32) -> String {
        format!("analog_input_{n}")
    }

    // --- CAN -----------------------------------------------------------------------------
    pub const CAN_REPORT_TYPE: &str = "can_report_type";
    pub const CAN_DEVICE_STATE: &str = "can_device_state";
    pub const CAN_REPORT_MASK: &str = "can_report_mask";
    pub const CAN_EXPANSION_MASK: &str = "can_expansion_mask";
    pub const CAN_VIN: &str = "can_vin";
    /// 0 off, 1 on, 2 engine on.
    pub const CAN_IGNITION_KEY: &str = "can_ignition_key";
    /// `H<hectometres>` or `I<impulses>`.
    pub const CAN_TOTAL_DISTANCE: &str = "can_total_distance";
    pub const CAN_TOTAL_FUEL_USED: &str = "can_total_fuel_used";
    pub const CAN_ENGINE_RPM: &str = "can_engine_rpm";
    pub const CAN_VEHICLE_SPEED: &str = "can_vehicle_speed";
    pub const CAN_COOLANT_TEMPERATURE: &str = "can_coolant_temperature";
    /// `M<L/100 km>`, `H<L/h>` or `L/H<L/h>`.
    pub const CAN_FUEL_CONSUMPTION: &str = "can_fuel_consumption";
    /// `L<litres>` or `P<percent>`.
    pub const CAN_FUEL_LEVEL: &str = "can_fuel_level";
    pub const CAN_RANGE: &str = "can_range";
    pub const CAN_ACCELERATOR_PEDAL: &str = "can_accelerator_pedal";
    /// Hours, 2 decimals.
    pub const CAN_ENGINE_HOURS: &str = "can_engine_hours";
    pub const CAN_DRIVING_TIME: &str = "can_driving_time";
    pub const CAN_IDLE_TIME: &str = "can_idle_time";
    pub const CAN_IDLE_FUEL_USED: &str = "can_idle_fuel_used";
    pub const CAN_AXLE_WEIGHT_2: &str = "can_axle_weight_2";
    pub const CAN_TACHOGRAPH_INFO: &str = "can_tachograph_info";
    pub const CAN_INDICATORS: &str = "can_indicators";
    pub const CAN_LIGHTS: &str = "can_lights";
    pub const CAN_DOORS: &str = "can_doors";
    pub const CAN_VEHICLE_OVERSPEED_TIME: &str = "can_vehicle_overspeed_time";
    pub const CAN_ENGINE_OVERSPEED_TIME: &str = "can_engine_overspeed_time";
    /// The expansion mask's first field: `P<percent>` / `L<litres>` on the captures.
    pub const CAN_ADBLUE_LEVEL: &str = "can_adblue_level";

    // --- OBD -----------------------------------------------------------------------------
    pub const OBD_REPORT_TYPE: &str = "obd_report_type";
    pub const OBD_REPORT_MASK: &str = "obd_report_mask";
    pub const OBD_VIN: &str = "obd_vin";
    pub const OBD_CONNECT: &str = "obd_connect";
    pub const OBD_POWER_MV: &str = "obd_power_mv";
    pub const OBD_SUPPORTED_PIDS: &str = "obd_supported_pids";
    pub const OBD_ENGINE_RPM: &str = "obd_engine_rpm";
    pub const OBD_VEHICLE_SPEED: &str = "obd_vehicle_speed";
    pub const OBD_COOLANT_TEMPERATURE: &str = "obd_coolant_temperature";
    /// May be `nan` / `Inf` (documented): then kept as text.
    pub const OBD_FUEL_CONSUMPTION: &str = "obd_fuel_consumption";
    pub const OBD_DTCS_CLEARED_DISTANCE: &str = "obd_dtcs_cleared_distance";
    pub const OBD_MIL_ACTIVATED_DISTANCE: &str = "obd_mil_activated_distance";
    pub const OBD_MIL_STATUS: &str = "obd_mil_status";
    pub const OBD_DTC_COUNT: &str = "obd_dtc_count";
    /// 4 hex digits per code, no separators.
    pub const OBD_DTCS: &str = "obd_dtcs";
    pub const OBD_THROTTLE_POSITION: &str = "obd_throttle_position";
    pub const OBD_ENGINE_LOAD: &str = "obd_engine_load";
    pub const OBD_FUEL_LEVEL_INPUT: &str = "obd_fuel_level_input";
    pub const OBD_PROTOCOL: &str = "obd_protocol";
    pub const OBD_ODOMETER_KM: &str = "obd_odometer_km";

    // --- other report types --------------------------------------------------------------
    pub const IGN_REPORT_TYPE: &str = "ign_report_type";
    pub const IGNITION_ON_SECONDS: &str = "ignition_on_seconds";
    pub const IGNITION_OFF_SECONDS: &str = "ignition_off_seconds";
    pub const RFID: &str = "rfid";
    pub const IDA_REPORT_TYPE: &str = "ida_report_type";
    pub const DAT_REPORT_TYPE: &str = "dat_report_type";
    /// `GTDAT`'s transparent data, text.
    pub const DATA: &str = "data";
    pub const DATA_TYPE: &str = "data_type";
    pub const DATA_LENGTH: &str = "data_length";
    /// `GTDTT`'s transparent data, sent as hex: its bytes.
    pub const TRANSPARENT_DATA: &str = "transparent_data";
    pub const WARNING_TYPE: &str = "warning_type";
    pub const FATIGUE_DEGREE: &str = "fatigue_degree";
    pub const ACCESSORY_INDEX: &str = "accessory_index";
    pub const ACCESSORY_TYPE: &str = "accessory_type";
    pub const ACCESSORY_MODEL: &str = "accessory_model";
    pub const ACCESSORY_ALARM_TYPE: &str = "accessory_alarm_type";
    pub const ACCESSORY_COUNT: &str = "accessory_count";
    pub const ACCESSORY_APPEND_MASK: &str = "accessory_append_mask";
    pub const ACCESSORY_NAME: &str = "accessory_name";
    pub const ACCESSORY_MAC: &str = "accessory_mac";
    pub const ACCESSORY_STATUS: &str = "accessory_status";
    pub const ACCESSORY_VOLTAGE_MV: &str = "accessory_voltage_mv";
    pub const ACCESSORY_TEMPERATURE: &str = "accessory_temperature";
    pub const ACCESSORY_HUMIDITY: &str = "accessory_humidity";
    pub const SWITCH_TYPE: &str = "switch_type";
    pub const SWITCH_STATE: &str = "switch_state";
    pub const BACKUP_BATTERY_VOLTAGE: &str = "backup_battery_voltage";
    pub const TEMPERATURE_ALARM_TYPE: &str = "temperature_alarm_type";
    /// `GTJDS`: 1 jamming ended, 2 jamming started.
    pub const JAMMING_STATUS: &str = "jamming_status";
    pub const GEO_MODE: &str = "geo_mode";
    pub const GEO_RADIUS: &str = "geo_radius";
    pub const GEO_CHECK_INTERVAL: &str = "geo_check_interval";
    pub const CALL_NUMBER: &str = "call_number";
    pub const FIX_TYPE: &str = "fix_type";
    pub const WIFI_COUNT: &str = "wifi_count";
    pub const LBS_TRIGGER_TYPE: &str = "lbs_trigger_type";
    pub const LBS_REPORT_TYPE: &str = "lbs_report_type";
    pub const COMPONENT_MASK: &str = "component_mask";
    pub const DEVICE_TYPE: &str = "device_type";
    pub const FIRMWARE_VERSION: &str = "firmware_version";
    pub const HARDWARE_VERSION: &str = "hardware_version";
    pub const CUSTOM_VERSION: &str = "custom_version";
    // GTINF.
    pub const ICCID: &str = "iccid";
    pub const EXTERNAL_POWER_SUPPLY: &str = "external_power_supply";
    /// GTINF's second supply voltage (vehicle models).
    pub const BACKUP_POWER_MV: &str = "backup_power_mv";
    /// Volts, as `4.25`.
    pub const BATTERY_VOLTAGE: &str = "battery_voltage";
    pub const CHARGING: &str = "charging";
    pub const LED_ON: &str = "led_on";
    pub const GPS_ON_NEED: &str = "gps_on_need";
    pub const GPS_ANTENNA_TYPE: &str = "gps_antenna_type";
    pub const GPS_ANTENNA_STATE: &str = "gps_antenna_state";
    pub const LAST_FIX_TIME: &str = "last_fix_time";
    pub const POWER_SAVING: &str = "power_saving";
    pub const EXTERNAL_GPS_ANTENNA: &str = "external_gps_antenna";
    pub const PIN_MASK: &str = "pin_mask";
    /// `±HHMM`.
    pub const TIME_ZONE_OFFSET: &str = "time_zone_offset";
    pub const DAYLIGHT_SAVING: &str = "daylight_saving";

    // --- classic binary ------------------------------------------------------------------
    pub const MESSAGE_TYPE: &str = "message_type";
    pub const REPORT_MASK: &str = "report_mask";
    pub const DEVICE_TYPE_CODE: &str = "device_type_code";
    pub const EIO_INPUTS: &str = "eio_inputs";
    pub const EIO_OUTPUTS: &str = "eio_outputs";
    /// High nibble: external antenna state; low nibble: satellites.
    pub const ANTENNA_SATELLITES: &str = "antenna_satellites";
    /// The 3 speed bytes (integer km/h and a fraction byte) as one number.
    pub const SPEED_RAW: &str = "speed_raw";
    /// A cell whose MCC/MNC are not BCD: the four words as sent.
    pub const MCC_RAW: &str = "mcc_raw";
    pub const MNC_RAW: &str = "mnc_raw";
    pub const LAC_RAW: &str = "lac_raw";
    pub const CELL_ID_RAW: &str = "cell_id_raw";
    pub const EVENT_RESERVED: &str = "event_reserved";
    pub const VGN_REPORT_TYPE: &str = "vgn_report_type";
    pub const BACKUP_BATTERY_MV: &str = "backup_battery_mv";
    pub const GPS_JAMMING_CW: &str = "gps_jamming_cw";
    pub const GPS_JAMMING_STATE: &str = "gps_jamming_state";
    /// A `+EVT` insert of a type and size the decoder does not name.
    pub const EVENT_DATA: &str = "event_data";
    pub const PHONE_LENGTH: &str = "phone_length";
    /// Bytes a layout does not cover.
    pub const UNDECODED: &str = "undecoded";
    /// Integer km and the fraction byte, as sent.
    pub const CURRENT_MILEAGE: &str = "current_mileage_km";
    pub const TOTAL_MILEAGE: &str = "total_mileage_km";
    pub const CURRENT_HOUR_METER: &str = "current_hour_meter";
    /// The compressed batch's per-point attribute and fix bit.
    pub const POINT_ATTRIBUTE: &str = "point_attribute";
    pub const FIX_TYPE_BIT: &str = "fix_type_bit";
    pub const ACK_ID: &str = "ack_id";
    /// A binary message kept whole (`+INF`, `+CRD`, …): every byte after the header.
    pub const BODY: &str = "body";

    // --- compact binary ------------------------------------------------------------------
    /// 0x2B real time, 0x2D buffered.
    pub const FRAME_HEADER: &str = "frame_header";
    pub const FRAME_FLAGS: &str = "frame_flags";
    pub const FRAME_TOTAL: &str = "frame_total";
    pub const FRAME_NUMBER: &str = "frame_number";
    pub const PROTOCOL_VERSION_NUMBER: &str = "protocol_version_number";
    pub const RESERVED_FIELD: &str = "reserved_field";
    /// Unix seconds.
    pub const GENERATED_TIME: &str = "generated_time";
    pub const RECORD_COUNT: &str = "record_count";
    pub const RECORD_ID: &str = "record_id";
    pub const EVENT_CODE: &str = "event_code";
    /// The location item's fix byte: bits 7–4 signal, 3–2 fix state (10 = fix), 1–0 mode.
    pub const FIX_STATUS: &str = "fix_status";
    pub const HDOP_TENTHS: &str = "hdop_tenths";
    /// Compact data ids mapped by the default profile.
    pub const ITEM_IGNITION: u32 = 27;
    pub const ITEM_TOTAL_MILEAGE_M: u32 = 31;
    pub const ITEM_TOTAL_HOUR_METER_S: u32 = 34;
}

/// Report types that are alarms by themselves.
pub const TYPE_ALARMS: &[(&str, Alarm)] = &[
    ("SOS", Alarm::Sos),
    ("TOW", Alarm::Tow),
    ("PNA", Alarm::PowerOn),
    ("PFA", Alarm::PowerOff),
    ("MPN", Alarm::PowerRestored),
    ("EPN", Alarm::PowerRestored),
    ("MPF", Alarm::PowerCut),
    ("EPF", Alarm::PowerCut),
    ("BPL", Alarm::LowBattery),
    ("CRA", Alarm::Accident),
    ("JDR", Alarm::Jamming),
    ("GIN", Alarm::GeofenceEnter),
    ("GOT", Alarm::GeofenceExit),
    ("IDN", Alarm::Idle),
];

const GEO: &[(u64, Alarm)] = &[(0, Alarm::GeofenceExit), (1, Alarm::GeofenceEnter)];
/// `GTSPD` report type 0 = outside the configured speed range (speeding); 1 = back inside.
const SPD: &[(u64, Alarm)] = &[(0, Alarm::Overspeed)];
/// `GTHBM` report type: 0 braking, 1 acceleration, 2 cornering, 3 braking + cornering,
/// 4 acceleration + cornering.
const HBM: &[(u64, Alarm)] = &[
    (0, Alarm::HarshBraking),
    (1, Alarm::HarshAcceleration),
    (2, Alarm::HarshCornering),
    (3, Alarm::HarshBraking),
    (4, Alarm::HarshAcceleration),
];
const HBM_CORNERING: &[(u64, Alarm)] = &[(3, Alarm::HarshCornering), (4, Alarm::HarshCornering)];
/// `GTDAR` warning type 1 = fatigue driving.
const DAR: &[(u64, Alarm)] = &[(1, Alarm::FatigueDriving)];
/// `GTJDS` 2 = jamming started.
const JDS: &[(u64, Alarm)] = &[(2, Alarm::Jamming)];
/// `GTTEM` 1 below the low threshold, 3 above the high one (2 = back in range).
const TEM: &[(u64, Alarm)] = &[(1, Alarm::Temperature), (3, Alarm::Temperature)];

/// One-wire sensors and analog inputs a rule is written for.
const MAX_SENSORS: u32 = 8;
const MAX_ANALOG: u32 = 4;

fn key(name: &str) -> Key {
    Key::Name(Cow::Owned(name.to_string()))
}

fn labelled(raw: &str, label: &str) -> Key {
    Key::Name(Cow::Owned(format!("{raw}.{label}")))
}

/// The default profile's rules.
fn rules() -> Vec<(Key, Rule)> {
    use name as n;
    use Field as F;
    let mut r = vec![
        (key(n::GPS_ACCURACY), Rule::field(F::Hdop).valid(1.0, 50.0)),
        (
            key(n::HDOP_TENTHS),
            Rule::field(F::Hdop).scale(0.1).valid(1.0, 254.0),
        ),
        (
            key(n::EXTERNAL_POWER_MV),
            Rule::field(F::ExternalPowerVolts).scale(0.001),
        ),
        (
            key(n::OBD_POWER_MV),
            Rule::field(F::ExternalPowerVolts).scale(0.001),
        ),
        (key(n::BATTERY_VOLTAGE), Rule::field(F::BatteryVolts)),
        (
            key(n::BATTERY_MV),
            Rule::field(F::BatteryVolts).scale(0.001),
        ),
        (
            key(n::BACKUP_BATTERY_MV),
            Rule::field(F::BatteryVolts).scale(0.001),
        ),
        (key(n::BACKUP_BATTERY_VOLTAGE), Rule::field(F::BatteryVolts)),
        (
            key(n::BATTERY_PERCENT),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (
            key(n::BACKUP_BATTERY_PERCENT),
            Rule::field(F::BatteryPercent).valid(0.0, 100.0),
        ),
        (key(n::CHARGING), Rule::field(F::Charging).valid(0.0, 1.0)),
        (
            key(n::MILEAGE_KM),
            Rule::field(F::OdometerMeters).scale(1000.0),
        ),
        (
            key(n::ODO_MILEAGE_KM),
            Rule::field(F::OdometerMeters).scale(1000.0),
        ),
        (
            key(n::TOTAL_MILEAGE),
            Rule::field(F::OdometerMeters).scale(1000.0),
        ),
        (
            key(n::OBD_ODOMETER_KM),
            Rule::field(F::ObdOdometerMeters).scale(1000.0),
        ),
        (
            key(n::CSQ_RSSI),
            Rule::field(F::GsmSignalPercent)
                .valid(0.0, 31.0)
                .scale(100.0 / 31.0),
        ),
        (key(n::ICCID), Rule::field(F::Iccid)),
        (key(n::VIN), Rule::field(F::Vin)),
        (key(n::CAN_VIN), Rule::field(F::Vin)),
        (key(n::OBD_VIN), Rule::field(F::Vin)),
        (key(n::RFID), Rule::field(F::DriverId)),
        (
            key(n::DEVICE_TEMPERATURE),
            Rule::field(F::DeviceTemperatureCelsius),
        ),
        (key(n::ENGINE_RPM), Rule::field(F::Rpm)),
        (key(n::CAN_ENGINE_RPM), Rule::field(F::Rpm)),
        (key(n::OBD_ENGINE_RPM), Rule::field(F::Rpm)),
        (key(n::CAN_VEHICLE_SPEED), Rule::field(F::ObdSpeedKmh)),
        (key(n::OBD_VEHICLE_SPEED), Rule::field(F::ObdSpeedKmh)),
        (
            key(n::CAN_COOLANT_TEMPERATURE),
            Rule::field(F::CoolantTemperatureCelsius),
        ),
        (
            key(n::OBD_COOLANT_TEMPERATURE),
            Rule::field(F::CoolantTemperatureCelsius),
        ),
        (key(n::CAN_TOTAL_FUEL_USED), Rule::field(F::FuelUsedLiters)),
        (
            key(n::CAN_ENGINE_HOURS),
            Rule::field(F::EngineSeconds).scale(3600.0),
        ),
        (
            key(n::CAN_ACCELERATOR_PEDAL),
            Rule::field(F::ThrottlePercent).valid(0.0, 100.0),
        ),
        (
            key(n::OBD_THROTTLE_POSITION),
            Rule::field(F::ThrottlePercent).valid(0.0, 100.0),
        ),
        (
            key(n::OBD_ENGINE_LOAD),
            Rule::field(F::EngineLoadPercent).valid(0.0, 100.0),
        ),
        (
            key(n::OBD_FUEL_LEVEL_INPUT),
            Rule::field(F::FuelLevelPercent).valid(0.0, 100.0),
        ),
        (
            key(n::FUEL_LEVEL_INPUT),
            Rule::field(F::FuelLevelPercent).valid(0.0, 100.0),
        ),
        (
            key(&n::fuel_sensor(1, "percent")),
            Rule::field(F::FuelLevelPercent).valid(0.0, 100.0),
        ),
        (
            key(&n::fuel_sensor(1, "volume")),
            Rule::field(F::FuelLiters),
        ),
        (
            key(n::CAN_IGNITION_KEY),
            Rule::field(F::Ignition).valid(0.0, 2.0),
        ),
        // The motion byte: 1x ignition off, 2x on, 4x no ignition signal; x1 rest, x2
        // motion, x6 tow, xA fake tow (moving).
        (
            labelled(n::MOTION_STATUS, "ignition_on"),
            Rule::field(F::Ignition).bit(5).when_bit(5),
        ),
        (
            labelled(n::MOTION_STATUS, "ignition_off"),
            Rule::field(F::Ignition).bit(5).when_bit(4),
        ),
        (
            labelled(n::MOTION_STATUS, "moving"),
            Rule::field(F::Motion).bit(1).when_bit(1),
        ),
        (
            labelled(n::MOTION_STATUS, "resting"),
            Rule::field(F::Motion).bit(1).when_bit(0),
        ),
        // The device status: the motion byte in bits 16–23, inputs 8–15 (bit 8 the
        // ignition detection input, bit 9 digital input 1), outputs 0–7.
        (
            labelled(n::DEVICE_STATUS, "ignition_on"),
            Rule::field(F::Ignition).bit(21).when_bit(21),
        ),
        (
            labelled(n::DEVICE_STATUS, "ignition_off"),
            Rule::field(F::Ignition).bit(21).when_bit(20),
        ),
        (
            labelled(n::DEVICE_STATUS, "moving"),
            Rule::field(F::Motion).bit(17).when_bit(17),
        ),
        (
            labelled(n::DEVICE_STATUS, "resting"),
            Rule::field(F::Motion).bit(17).when_bit(16),
        ),
        // Report id/type, per message type (low nibble = type).
        (
            labelled("geo_report_id_type", "fence"),
            Rule::alarm_codes(GEO).bits(0, 4),
        ),
        (key("geo_report_type"), Rule::alarm_codes(GEO)),
        (
            labelled("spd_report_id_type", "speed"),
            Rule::alarm_codes(SPD).bits(0, 4),
        ),
        (key("spd_report_type"), Rule::alarm_codes(SPD)),
        (
            labelled("hbm_report_id_type", "kind"),
            Rule::alarm_codes(HBM).bits(0, 4),
        ),
        (
            labelled("hbm_report_id_type", "cornering"),
            Rule::alarm_codes(HBM_CORNERING).bits(0, 4),
        ),
        (
            labelled("nmr_report_id_type", "motion"),
            Rule::field(F::Motion).bits(0, 4).valid(0.0, 1.0),
        ),
        (
            key("nmr_report_type"),
            Rule::field(F::Motion).valid(0.0, 1.0),
        ),
        (key(n::WARNING_TYPE), Rule::alarm_codes(DAR)),
        (key(n::JAMMING_STATUS), Rule::alarm_codes(JDS)),
        (key(n::TEMPERATURE_ALARM_TYPE), Rule::alarm_codes(TEM)),
        (
            Key::Id(n::ITEM_IGNITION),
            Rule::field(F::Ignition).valid(0.0, 1.0),
        ),
        (
            Key::Id(n::ITEM_TOTAL_MILEAGE_M),
            Rule::field(F::OdometerMeters),
        ),
        (
            Key::Id(n::ITEM_TOTAL_HOUR_METER_S),
            Rule::field(F::EngineSeconds),
        ),
    ];
    for i in 1..=4u8 {
        r.push((
            labelled(n::DEVICE_STATUS, &format!("in{i}")),
            Rule::input(i).bit(8 + i),
        ));
        r.push((
            labelled(n::DIGITAL_INPUTS, &format!("in{i}")),
            Rule::input(i).bit(i),
        ));
    }
    for i in 1..=4u8 {
        r.push((
            labelled(n::DEVICE_STATUS, &format!("out{i}")),
            Rule::output(i).bit(i - 1),
        ));
        r.push((
            labelled(n::DIGITAL_OUTPUTS, &format!("out{i}")),
            Rule::output(i).bit(i - 1),
        ));
    }
    for i in 1..=MAX_ANALOG {
        r.push((
            key(&n::analog_input(i)),
            Rule::indexed(F::AnalogInputsVolts, i).scale(0.001),
        ));
    }
    for i in 1..=MAX_SENSORS {
        r.push((
            key(&n::one_wire(i, "temperature")),
            Rule::indexed(F::TemperaturesCelsius, i).scale(0.0625),
        ));
    }
    r
}

/// The built-in profiles; `queclink` is the default.
pub fn profiles() -> Vec<Profile> {
    vec![Profile::new("queclink", Protocol::Queclink, rules())]
}

fn raw_text<'e>(e: &'e TelemetryEvent, n: &str) -> Option<&'e str> {
    match e.raw_named(n) {
        Some(raw_value::Value::StringValue(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn raw_uint(e: &TelemetryEvent, n: &str) -> Option<u64> {
    match e.raw_named(n) {
        Some(raw_value::Value::UintValue(v)) => Some(*v),
        _ => None,
    }
}

/// `HHHHH:MM:SS` → seconds.
pub fn hour_meter_seconds(s: &str) -> Option<f64> {
    let mut p = s.split(':');
    let h: f64 = p.next()?.parse().ok()?;
    let m: f64 = p.next().map_or(Some(0.0), |x| x.parse().ok())?;
    let sec: f64 = p.next().map_or(Some(0.0), |x| x.parse().ok())?;
    Some(h * 3600.0 + m * 60.0 + sec)
}

/// A value with a unit prefix (`H20460`, `L/H1.5`, `P84.00`): the prefix and the number.
fn prefixed(s: &str) -> Option<(&str, f64)> {
    let at = s.find(|c: char| c.is_ascii_digit() || c == '-' || c == '.')?;
    let (unit, num) = s.split_at(at);
    Some((unit, num.parse().ok().filter(|v: &f64| v.is_finite())?))
}

/// SAE J2012 two-byte codes (`0300` → `P0300`), 4 hex digits each.
pub fn dtcs(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() % 4 != 0 || !b.iter().all(u8::is_ascii_hexdigit) {
        return Vec::new();
    }
    b.chunks(4)
        .filter_map(|c| {
            let v = u16::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()?;
            let sys = ['P', 'C', 'B', 'U'][usize::from(v >> 14)];
            Some(format!("{sys}{:X}{:03X}", (v >> 12) & 0x3, v & 0x0FFF))
        })
        .collect()
}

/// Facts of the message type and the model that no rule can say.
fn type_facts(m: &mut Mapper<'_>, rep: &Report, e: &TelemetryEvent) {
    if let Some((_, a)) = TYPE_ALARMS.iter().find(|(t, _)| *t == rep.ty) {
        m.raise(*a);
    }
    match rep.ty.as_str() {
        "IGN" | "VGN" => m.set(Field::Ignition, 0, Converted::Flag(true)),
        "IGF" | "VGF" => m.set(Field::Ignition, 0, Converted::Flag(false)),
        "BTC" => m.set(Field::Charging, 0, Converted::Flag(true)),
        "STC" => m.set(Field::Charging, 0, Converted::Flag(false)),
        "IGL" | "VGL" => {
            let key = format!("{}_{}", rep.ty.to_ascii_lowercase(), name::REPORT_ID_TYPE);
            if let Some(v) = raw_uint(e, &key) {
                // Report type 0 = ignition on, 1 = off (GV/GL documents); the CV200's is
                // inverted.
                let on = match (v & 0x0F, rep.model.is_some_and(|md| md.is_cv200())) {
                    (0, false) | (1, true) => Some(true),
                    (1, false) | (0, true) => Some(false),
                    _ => None,
                };
                if let Some(on) = on {
                    m.set(Field::Ignition, 0, Converted::Flag(on));
                }
            }
        }
        _ => {}
    }
    if let Some(s) = raw_text(e, name::HOUR_METER_COUNT).and_then(hour_meter_seconds) {
        m.set(Field::EngineSeconds, 0, Converted::Number(s));
    }
    if let Some((unit, v)) = raw_text(e, name::CAN_TOTAL_DISTANCE).and_then(prefixed) {
        // H = hectometres; I = impulses, not a distance.
        if unit == "H" {
            m.set(Field::ObdOdometerMeters, 0, Converted::Number(v * 100.0));
        }
    }
    if let Some((unit, v)) = raw_text(e, name::CAN_FUEL_LEVEL).and_then(prefixed) {
        match unit {
            "L" => m.set(Field::FuelLiters, 0, Converted::Number(v)),
            "P" if (0.0..=100.0).contains(&v) => {
                m.set(Field::FuelLevelPercent, 0, Converted::Number(v))
            }
            _ => {}
        }
    }
    if let Some((unit, v)) = raw_text(e, name::CAN_FUEL_CONSUMPTION).and_then(prefixed) {
        if matches!(unit, "H" | "L/H") {
            m.set(Field::FuelRateLitersPerHour, 0, Converted::Number(v));
        }
    }
    if let Some(s) = raw_text(e, name::OBD_DTCS) {
        for code in dtcs(s) {
            m.set(Field::Dtcs, 0, Converted::Text(code));
        }
    }
}

/// The events of a decoded report: one per record, the message's own values on the last.
pub fn to_events(rep: &Report, profile: &Profile) -> Vec<TelemetryEvent> {
    let last = rep.records.len().saturating_sub(1);
    let mut out = Vec::with_capacity(rep.records.len());
    for (i, r) in rep.records.iter().enumerate() {
        let mut e = TelemetryEvent {
            protocol: Protocol::Queclink as i32,
            position: r.position,
            cell_towers: r.cells.clone(),
            wifi_access_points: r.wifi.clone(),
            raw: r.raw.clone(),
            ..Default::default()
        };
        if i == last {
            e.raw.extend(rep.shared.iter().cloned());
            e.text.clone_from(&rep.text);
        }
        e.device_time = r.fix_time.or(rep.send_time).map(timestamp_secs);
        e.kind = match &rep.class {
            Class::Heartbeat => EventKind::Heartbeat,
            Class::CommandAck { .. } => EventKind::CommandResponse,
            Class::Report if e.position.is_some() => EventKind::Position,
            Class::Report if !e.cell_towers.is_empty() || !e.wifi_access_points.is_empty() => {
                EventKind::Lbs
            }
            Class::Report => EventKind::Status,
        } as i32;
        let snapshot = e.clone();
        map_raw(&mut e, profile, |m| type_facts(m, rep, &snapshot));
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::raw;
    use crate::proto::{Position, RawValue};
    use crate::protocol::queclink::report::Record;

    fn report(ty: &str, values: Vec<RawValue>) -> Report {
        let mut r = Report::new(Class::Report, ty);
        r.records.push(Record {
            position: Some(Position::default()),
            ..Default::default()
        });
        r.shared = values;
        r
    }

    fn one(ty: &str, values: Vec<RawValue>) -> TelemetryEvent {
        to_events(&report(ty, values), &profiles()[0]).remove(0)
    }

    #[test]
    fn device_status_feeds_ignition_motion_inputs_and_outputs() {
        // 22 ignition on + moving, inputs 0x02 (input 1), outputs 0x01 (output 1).
        let e = one("FRI", vec![raw::uint(name::DEVICE_STATUS, 0x22_02_01)]);
        let t = e.telemetry();
        assert_eq!((t.ignition, t.motion), (Some(true), Some(true)));
        assert_eq!(t.digital_inputs.map(|v| v & 0xF), Some(0b0001));
        assert_eq!(t.digital_outputs.map(|v| v & 0xF), Some(0b0001));
        // 11: ignition off, resting.
        let e = one("FRI", vec![raw::uint(name::DEVICE_STATUS, 0x11_00_00)]);
        assert_eq!(
            (e.telemetry().ignition, e.telemetry().motion),
            (Some(false), Some(false))
        );
        // 41: no ignition signal: ignition unknown, resting.
        let e = one("FRI", vec![raw::uint(name::DEVICE_STATUS, 0x41_00_00)]);
        assert_eq!(
            (e.telemetry().ignition, e.telemetry().motion),
            (None, Some(false))
        );
        // 16 tow: ignition off, moving. The 10-digit form has the same low 24 bits.
        let e = one("FRI", vec![raw::uint(name::DEVICE_STATUS, 0x0016_0000)]);
        assert_eq!(
            (e.telemetry().ignition, e.telemetry().motion),
            (Some(false), Some(true))
        );
        let e = one("INF", vec![raw::uint(name::MOTION_STATUS, 0x1A)]);
        assert_eq!(
            (e.telemetry().ignition, e.telemetry().motion),
            (Some(false), Some(true))
        );
    }

    #[test]
    fn report_types_and_report_id_types_raise_alarms() {
        let alarms = |ty: &str, v: Vec<RawValue>| one(ty, v).alarms;
        assert_eq!(alarms("SOS", vec![]), vec![Alarm::Sos as i32]);
        assert_eq!(alarms("PFA", vec![]), vec![Alarm::PowerOff as i32]);
        assert_eq!(alarms("MPF", vec![]), vec![Alarm::PowerCut as i32]);
        assert_eq!(alarms("FRI", vec![]), Vec::<i32>::new());
        let geo = |v| alarms("GEO", vec![raw::uint("geo_report_id_type", v)]);
        assert_eq!(geo(0x21), vec![Alarm::GeofenceEnter as i32]);
        assert_eq!(geo(0x30), vec![Alarm::GeofenceExit as i32]);
        let spd = |v| alarms("SPD", vec![raw::uint("spd_report_id_type", v)]);
        assert_eq!(spd(0x00), vec![Alarm::Overspeed as i32]);
        assert_eq!(spd(0x01), Vec::<i32>::new(), "back inside the range");
        let hbm = |v| alarms("HBM", vec![raw::uint("hbm_report_id_type", v)]);
        assert_eq!(hbm(0x12), vec![Alarm::HarshCornering as i32]);
        assert_eq!(hbm(0x10), vec![Alarm::HarshBraking as i32]);
        let mut both = hbm(0x24);
        both.sort_unstable();
        assert_eq!(
            both,
            vec![
                Alarm::HarshAcceleration as i32,
                Alarm::HarshCornering as i32
            ]
        );
        let e = one("SOS", vec![]);
        assert_eq!(e.kind, EventKind::Alarm as i32);
    }

    #[test]
    fn units_and_prefixed_values() {
        let e = one(
            "CAN",
            vec![
                raw::uint(name::EXTERNAL_POWER_MV, 12349),
                raw::double(name::MILEAGE_KM, 2000.5),
                raw::string(name::HOUR_METER_COUNT, "01476:55:53"),
                raw::string(name::CAN_TOTAL_DISTANCE, "H20460"),
                raw::string(name::CAN_FUEL_LEVEL, "P84.00"),
                raw::string(name::CAN_FUEL_CONSUMPTION, "L/H51.2"),
                raw::int(name::one_wire(1, "temperature"), -30),
                raw::string(name::OBD_DTCS, "03000031"),
                raw::uint(name::analog_input(3), 0),
            ],
        );
        let t = e.telemetry();
        assert!((t.external_power_volts.unwrap() - 12.349).abs() < 1e-9);
        assert_eq!(t.odometer_meters, Some(2_000_500.0));
        assert_eq!(t.engine_seconds, Some(1476.0 * 3600.0 + 55.0 * 60.0 + 53.0));
        assert_eq!(t.obd_odometer_meters, Some(2_046_000.0));
        assert_eq!(t.fuel_level_percent, Some(84.0));
        assert_eq!(t.fuel_rate_liters_per_hour, Some(51.2));
        assert_eq!(t.temperatures_celsius[&1], -1.875);
        assert_eq!(t.dtcs, vec!["P0300".to_string(), "P0031".to_string()]);
        assert_eq!(t.analog_inputs_volts[&3], 0.0);
        // Impulses are no distance.
        let e = one("CAN", vec![raw::string(name::CAN_TOTAL_DISTANCE, "I6782")]);
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn igl_polarity_is_the_models() {
        let igl = |v, code: &str| {
            let mut r = report("IGL", vec![raw::uint("igl_report_id_type", v)]);
            r.model = crate::protocol::queclink::models::by_code(code);
            to_events(&r, &profiles()[0]).remove(0).telemetry().ignition
        };
        assert_eq!(igl(0x00, "F1"), Some(true));
        assert_eq!(igl(0x01, "F1"), Some(false));
        assert_eq!(igl(0x00, "BD"), Some(false));
        assert_eq!(igl(0x01, "BD"), Some(true));
    }

    #[test]
    fn every_rule_names_a_raw_name_the_decoders_write() {
        let scoped = ["geo_", "spd_", "hbm_", "nmr_"];
        for (k, _) in profiles()[0].rules() {
            let Key::Name(n) = k else { continue };
            let base = n.split('.').next().unwrap_or_default();
            assert!(
                !base.is_empty()
                    && (scoped.iter().any(|p| base.starts_with(p))
                        || base
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
                "{n}"
            );
        }
    }
}
