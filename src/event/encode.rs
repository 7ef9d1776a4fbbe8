//! The protobuf encoding of `TelemetryEvent`, written by hand for the hot path.
//!
//! prost's generated encoder computes every nested message's length twice (once for the
//! whole message, once for each length prefix) and, writing into a `Vec`, appends every
//! varint byte through `extend_from_slice`. For a 15-record Codec 8E frame that was ~5.7 k
//! instructions per event, more than decoding and mapping together (docs/performance.md).
//! This writer makes one pass: a nested message gets a one-byte length placeholder that is
//! patched (and widened in the rare case the message is 128 bytes or more) once its content
//! is written.
//!
//! The bytes are exactly prost's: fields in field-number order, proto3 defaults skipped the
//! same way, packed repeated enums. `tests` compares the two on fully populated messages
//! built with exhaustive struct literals, so a field added to the schema does not compile
//! there until it is added here too.

use crate::proto::{
    attribute_value, raw_value, AttributeValue, CellTower, File, Position, RawValue, Telemetry,
    TelemetryEvent, WifiAccessPoint,
};

use super::Timestamp;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// The encoded event.
pub fn encode_event(e: &TelemetryEvent) -> Vec<u8> {
    // A typical event is 200–400 bytes; one growth at most for large ones.
    let mut w = Writer(Vec::with_capacity(384 + 24 * e.raw.len()));
    w.event(e);
    w.0
}

/// The encoded event as `Bytes` of exactly its length: written into a per-thread scratch
/// buffer, then copied once. (`Bytes::from(Vec)` of a vector with spare capacity allocates
/// a second block to remember the capacity; a copy of 300 bytes costs less than that.)
pub fn encode_event_bytes(e: &TelemetryEvent) -> bytes::Bytes {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| {
        let Ok(mut buf) = s.try_borrow_mut() else {
            return encode_event(e).into();
        };
        buf.clear();
        let mut w = Writer(std::mem::take(&mut *buf));
        w.event(e);
        let out = bytes::Bytes::copy_from_slice(&w.0);
        // Keep the scratch, but not a huge one (a file upload).
        if w.0.capacity() <= 64 * 1024 {
            *buf = w.0;
        }
        out
    })
}

struct Writer(Vec<u8>);

impl Writer {
    #[inline]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    #[inline]
    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A proto3 string or bytes field: skipped when empty.
    fn bytes_nonempty(&mut self, field: u32, b: &[u8]) {
        if !b.is_empty() {
            self.bytes(field, b);
        }
    }

    fn uint(&mut self, field: u32, v: u64) {
        self.key(field, VARINT);
        self.varint(v);
    }

    /// int32 / int64 / enum: negative values are sign-extended to 64 bits (10 bytes).
    fn int(&mut self, field: u32, v: i64) {
        self.uint(field, v as u64);
    }

    fn sint(&mut self, field: u32, v: i64) {
        self.uint(field, ((v << 1) ^ (v >> 63)) as u64);
    }

    fn double(&mut self, field: u32, v: f64) {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn opt_double(&mut self, field: u32, v: Option<f64>) {
        if let Some(v) = v {
            self.double(field, v);
        }
    }

    fn opt_bool(&mut self, field: u32, v: Option<bool>) {
        if let Some(v) = v {
            self.uint(field, u64::from(v));
        }
    }

    fn opt_uint(&mut self, field: u32, v: Option<u64>) {
        if let Some(v) = v {
            self.uint(field, v);
        }
    }

    fn opt_str(&mut self, field: u32, v: &Option<String>) {
        if let Some(v) = v {
            self.bytes(field, v.as_bytes());
        }
    }

    /// A nested message: key, length, content. The length is written after the content
    /// into a one-byte slot, widened when the content is 128 bytes or more.
    fn nested(&mut self, field: u32, content: impl FnOnce(&mut Writer)) {
        self.key(field, LEN);
        let at = self.0.len();
        self.0.push(0);
        content(self);
        let len = self.0.len() - at - 1;
        if len < 0x80 {
            self.0[at] = len as u8;
        } else {
            let mut prefix = [0u8; 10];
            let mut n = 0;
            let mut v = len as u64;
            while v >= 0x80 {
                prefix[n] = v as u8 | 0x80;
                v >>= 7;
                n += 1;
            }
            prefix[n] = v as u8;
            self.0.splice(at..=at, prefix[..=n].iter().copied());
        }
    }

    fn timestamp(&mut self, field: u32, t: &Timestamp) {
        self.nested(field, |w| {
            if t.seconds != 0 {
                w.int(1, t.seconds);
            }
            if t.nanos != 0 {
                w.int(2, t.nanos.into());
            }
        });
    }

    fn event(&mut self, e: &TelemetryEvent) {
        self.bytes_nonempty(1, e.event_id.as_bytes());
        self.bytes_nonempty(2, e.imei.as_bytes());
        if e.protocol != 0 {
            self.int(3, e.protocol.into());
        }
        if e.transport != 0 {
            self.int(4, e.transport.into());
        }
        if e.kind != 0 {
            self.int(5, e.kind.into());
        }
        if let Some(t) = &e.received_at {
            self.timestamp(6, t);
        }
        if let Some(t) = &e.device_time {
            self.timestamp(7, t);
        }
        if let Some(p) = &e.position {
            self.nested(8, |w| w.position(p));
        }
        for (k, v) in &e.attributes {
            self.nested(9, |w| {
                w.bytes_nonempty(1, k.as_bytes());
                if v.value.is_some() {
                    w.nested(2, |w| w.attribute(v));
                }
            });
        }
        self.bytes_nonempty(10, e.peer.as_bytes());
        self.bytes_nonempty(11, e.gateway.as_bytes());
        if let Some(t) = &e.telemetry {
            self.nested(12, |w| w.telemetry(t));
        }
        if !e.alarms.is_empty() {
            self.nested(13, |w| {
                for a in &e.alarms {
                    w.varint(i64::from(*a) as u64);
                }
            });
        }
        for r in &e.raw {
            self.nested(14, |w| w.raw(r));
        }
        for c in &e.cell_towers {
            self.nested(15, |w| w.cell(c));
        }
        for a in &e.wifi_access_points {
            self.nested(16, |w| w.wifi(a));
        }
        self.opt_str(17, &e.text);
        if let Some(f) = &e.file {
            self.nested(18, |w| w.file(f));
        }
    }

    fn position(&mut self, p: &Position) {
        if p.latitude != 0.0 {
            self.double(1, p.latitude);
        }
        if p.longitude != 0.0 {
            self.double(2, p.longitude);
        }
        self.opt_double(3, p.altitude);
        self.opt_double(4, p.speed);
        self.opt_double(5, p.course);
        self.opt_uint(6, p.satellites.map(u64::from));
        self.opt_double(7, p.hdop);
        if p.valid {
            self.uint(8, 1);
        }
        self.opt_double(9, p.pdop);
        self.opt_double(10, p.accuracy_meters);
    }

    fn attribute(&mut self, a: &AttributeValue) {
        use attribute_value::Value as V;
        match &a.value {
            Some(V::IntValue(v)) => self.int(1, *v),
            Some(V::UintValue(v)) => self.uint(2, *v),
            Some(V::DoubleValue(v)) => self.double(3, *v),
            Some(V::StringValue(v)) => self.bytes(4, v.as_bytes()),
            Some(V::BoolValue(v)) => self.uint(5, u64::from(*v)),
            Some(V::BytesValue(v)) => self.bytes(6, v),
            None => {}
        }
    }

    fn raw(&mut self, r: &RawValue) {
        if let Some(id) = r.id {
            self.uint(1, id.into());
        }
        self.bytes_nonempty(2, r.name.as_bytes());
        use raw_value::Value as V;
        match &r.value {
            Some(V::UintValue(v)) => self.uint(3, *v),
            Some(V::IntValue(v)) => self.sint(4, *v),
            Some(V::DoubleValue(v)) => self.double(5, *v),
            Some(V::StringValue(v)) => self.bytes(6, v.as_bytes()),
            Some(V::BytesValue(v)) => self.bytes(7, v),
            None => {}
        }
    }

    fn cell(&mut self, c: &CellTower) {
        if c.mcc != 0 {
            self.uint(1, c.mcc.into());
        }
        if c.mnc != 0 {
            self.uint(2, c.mnc.into());
        }
        if c.lac != 0 {
            self.uint(3, c.lac);
        }
        if c.cell_id != 0 {
            self.uint(4, c.cell_id);
        }
        if let Some(s) = c.signal {
            self.int(5, s.into());
        }
    }

    fn wifi(&mut self, a: &WifiAccessPoint) {
        self.bytes_nonempty(1, a.mac.as_bytes());
        if let Some(s) = a.signal_dbm {
            self.int(2, s.into());
        }
    }

    fn file(&mut self, f: &File) {
        self.bytes_nonempty(1, f.name.as_bytes());
        self.bytes_nonempty(2, f.r#type.as_bytes());
        self.bytes_nonempty(3, &f.data);
    }

    fn indexed(&mut self, field: u32, m: &std::collections::BTreeMap<u32, f64>) {
        for (k, v) in m {
            self.nested(field, |w| {
                if *k != 0 {
                    w.uint(1, (*k).into());
                }
                if *v != 0.0 {
                    w.double(2, *v);
                }
            });
        }
    }

    fn telemetry(&mut self, t: &Telemetry) {
        self.opt_bool(1, t.ignition);
        self.opt_bool(2, t.motion);
        self.opt_double(3, t.external_power_volts);
        self.opt_double(4, t.battery_volts);
        self.opt_double(5, t.battery_percent);
        self.opt_bool(6, t.charging);
        self.opt_double(7, t.odometer_meters);
        self.opt_double(8, t.trip_odometer_meters);
        self.opt_double(9, t.engine_seconds);
        self.opt_double(10, t.gsm_signal_percent);
        self.opt_double(11, t.gsm_signal_dbm);
        self.opt_str(12, &t.gsm_operator);
        self.opt_bool(13, t.roaming);
        self.opt_uint(14, t.satellites_visible.map(u64::from));
        self.opt_uint(15, t.digital_inputs.map(u64::from));
        self.opt_uint(16, t.digital_outputs.map(u64::from));
        self.opt_uint(17, t.digital_inputs_reported.map(u64::from));
        self.opt_uint(18, t.digital_outputs_reported.map(u64::from));
        self.indexed(19, &t.analog_inputs_volts);
        self.indexed(20, &t.temperatures_celsius);
        self.opt_double(21, t.fuel_level_percent);
        self.opt_double(22, t.fuel_liters);
        self.opt_double(23, t.fuel_used_liters);
        self.opt_double(24, t.fuel_rate_liters_per_hour);
        self.opt_double(25, t.rpm);
        self.opt_double(26, t.coolant_temperature_celsius);
        self.opt_double(27, t.obd_speed_kmh);
        self.opt_double(28, t.obd_odometer_meters);
        self.opt_double(29, t.throttle_percent);
        self.opt_double(30, t.engine_load_percent);
        self.opt_double(31, t.engine_temperature_celsius);
        self.opt_str(32, &t.vin);
        for d in &t.dtcs {
            self.bytes(33, d.as_bytes());
        }
        self.opt_str(34, &t.driver_id);
        self.opt_str(35, &t.iccid);
        self.opt_bool(36, t.armed);
        self.opt_bool(37, t.engine_blocked);
        self.opt_bool(38, t.door_open);
        self.opt_bool(39, t.gnss_tracking);
        self.opt_double(40, t.device_temperature_celsius);
        self.opt_double(41, t.humidity_percent);
        self.opt_uint(42, t.steps);
        self.opt_double(43, t.heart_rate_bpm);
        self.opt_double(44, t.acceleration_g);
        self.opt_uint(45, t.device_mode.map(u64::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Alarm;
    use prost::Message;

    fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    /// Every field set, by exhaustive struct literals: a field added to the schema stops this
    /// from compiling until it is set here (and then the comparison needs it encoded).
    fn full_telemetry(k: f64) -> Telemetry {
        Telemetry {
            ignition: Some(true),
            motion: Some(false),
            external_power_volts: Some(12.3 + k),
            battery_volts: Some(4.1),
            battery_percent: Some(88.0),
            charging: Some(true),
            odometer_meters: Some(123_456.0),
            trip_odometer_meters: Some(12.5),
            engine_seconds: Some(3_600.0),
            gsm_signal_percent: Some(80.0),
            gsm_signal_dbm: Some(-71.0),
            gsm_operator: Some("24602".into()),
            roaming: Some(false),
            satellites_visible: Some(14),
            digital_inputs: Some(0b101),
            digital_outputs: Some(0),
            digital_inputs_reported: Some(0b111),
            digital_outputs_reported: Some(1),
            analog_inputs_volts: [(1, 3.3), (2, 0.0), (0, 1.0)].into_iter().collect(),
            temperatures_celsius: [(1, -21.5), (3, 40.0)].into_iter().collect(),
            fuel_level_percent: Some(55.5),
            fuel_liters: Some(40.0),
            fuel_used_liters: Some(1_000.25),
            fuel_rate_liters_per_hour: Some(2.5),
            rpm: Some(1_800.0),
            coolant_temperature_celsius: Some(90.0),
            obd_speed_kmh: Some(61.0),
            obd_odometer_meters: Some(99_000.0),
            throttle_percent: Some(12.0),
            engine_load_percent: Some(33.0),
            engine_temperature_celsius: Some(95.5),
            vin: Some("WVWZZZ1JZ3W386752".into()),
            dtcs: vec!["P0301".into(), String::new()],
            driver_id: Some("0102030405060708".into()),
            iccid: Some("8937204016210003410".into()),
            armed: Some(true),
            engine_blocked: Some(false),
            door_open: Some(true),
            gnss_tracking: Some(true),
            device_temperature_celsius: Some(-5.0),
            humidity_percent: Some(40.0),
            steps: Some(u64::MAX),
            heart_rate_bpm: Some(72.0),
            acceleration_g: Some(0.5),
            device_mode: Some(3),
        }
    }

    fn full_event(k: usize) -> TelemetryEvent {
        let long = "x".repeat(200 + k);
        TelemetryEvent {
            event_id: format!("356307042441013-{k:032x}-{k}"),
            imei: "356307042441013".into(),
            protocol: 1,
            transport: 2,
            kind: 4,
            received_at: ts(1_795_217_550, 123_000_000),
            device_time: ts(-5, -1),
            position: Some(Position {
                latitude: -54.682,
                longitude: 25.391,
                altitude: Some(0.0),
                speed: Some(42.0),
                course: Some(270.0),
                satellites: Some(0),
                hdop: Some(0.7),
                valid: true,
                pdop: Some(1.2),
                accuracy_meters: Some(5.0),
            }),
            attributes: [
                ("reason".to_string(), crate::event::attr::string("idle")),
                ("a".to_string(), crate::event::attr::int(-3)),
                ("b".to_string(), crate::event::attr::uint(3)),
                ("c".to_string(), crate::event::attr::double(-0.5)),
                ("d".to_string(), crate::event::attr::boolean(false)),
                ("e".to_string(), crate::event::attr::bytes(vec![0u8; 3])),
                ("f".to_string(), AttributeValue { value: None }),
                (String::new(), crate::event::attr::uint(0)),
            ]
            .into_iter()
            .collect(),
            peer: "127.0.0.1:40000".into(),
            gateway: "avlgate-0".into(),
            telemetry: Some(Box::new(full_telemetry(k as f64))),
            alarms: vec![Alarm::Sos as i32, Alarm::Tow as i32, -1],
            raw: vec![
                crate::event::raw::id_uint(239, 1),
                crate::event::raw::id_uint(0, 0),
                crate::event::raw::id_bytes(256, long.as_bytes().to_vec()),
                crate::event::raw::uint("priority", 2),
                crate::event::raw::int("t", -40),
                crate::event::raw::double("d", 1.5),
                crate::event::raw::string("s", long.clone()),
                crate::event::raw::bytes("b", vec![1, 2, 3]),
                RawValue {
                    id: None,
                    name: String::new(),
                    value: None,
                },
            ],
            cell_towers: vec![
                CellTower {
                    mcc: 246,
                    mnc: 2,
                    lac: 1_000,
                    cell_id: 123_456_789,
                    signal: Some(-80),
                },
                CellTower::default(),
            ],
            wifi_access_points: vec![WifiAccessPoint {
                mac: "aa:bb:cc:dd:ee:ff".into(),
                signal_dbm: Some(-60),
            }],
            text: Some(String::new()),
            file: Some(File {
                name: "photo.jpg".into(),
                r#type: "image".into(),
                data: long.into_bytes(),
            }),
        }
    }

    #[test]
    fn same_bytes_as_prost_for_full_and_empty_events() {
        for k in [0, 1, 77, 300] {
            let e = full_event(k);
            assert_eq!(encode_event(&e), e.encode_to_vec(), "k = {k}");
        }
        let e = TelemetryEvent::default();
        assert_eq!(encode_event(&e), e.encode_to_vec());
        let e = TelemetryEvent {
            telemetry: Some(Box::default()),
            position: Some(Position::default()),
            text: None,
            ..Default::default()
        };
        assert_eq!(encode_event(&e), e.encode_to_vec());
    }

    #[test]
    fn the_bytes_path_matches() {
        for k in [0, 300] {
            let e = full_event(k);
            assert_eq!(&encode_event_bytes(&e)[..], &e.encode_to_vec()[..]);
        }
    }

    #[test]
    fn lengths_across_the_one_byte_boundary() {
        for n in 100..300 {
            let e = TelemetryEvent {
                raw: vec![crate::event::raw::string("s", "y".repeat(n))],
                file: Some(File {
                    data: vec![7; n * 70],
                    ..Default::default()
                }),
                ..Default::default()
            };
            assert_eq!(encode_event(&e), e.encode_to_vec(), "n = {n}");
        }
    }
}
