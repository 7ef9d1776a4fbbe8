//! One vocabulary for every protocol: the same facts sent by devices of different protocols
//! come out as the same normalized fields, units and alarms.
//!
//! Each protocol gets a frame carrying: ignition on, a 12.3 V external supply, an SOS alarm,
//! digital input 1 high and the driver key `0102030405060708`, each in the protocol's own
//! encoding (Teltonika IO elements and panic priority, Wialon IPS parameters and iButton,
//! GT06 status bits, alarm byte and driver card). The GT06 family has no one packet with all
//! five: its alarm packet carries ignition, SOS and the driver card, the X1 packet the supply
//! voltage and the inputs; both are checked, each for what it carries.

use std::time::SystemTime;

use avlgate::proto::{Alarm, TelemetryEvent, Transport};
use avlgate::protocol::gt06::{frame as gt06_frame, Gt06};
use avlgate::protocol::teltonika::avl::{self, Codec, IoValue, Record};
use avlgate::protocol::teltonika::{frame as tframe, Teltonika};
use avlgate::protocol::wialon::{packet as wpacket, Wialon};
use avlgate::protocol::{ProtocolConfig, ProtocolModule};
use bytes::BytesMut;

const IMEI: &str = "356307042441013";
const DRIVER: &str = "0102030405060708";

/// The events of `stream` through a fresh TCP session of `module`.
fn events(module: &dyn ProtocolModule, stream: &[u8]) -> Vec<TelemetryEvent> {
    let mut s = module.new_session(Transport::Tcp, &ProtocolConfig::default());
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    while let Some(f) = s
        .decode(&mut buf, SystemTime::now())
        .expect("no decode error")
    {
        out.extend(f.events);
    }
    assert!(
        buf.is_empty(),
        "{}: {} bytes left",
        module.name(),
        buf.len()
    );
    out
}

/// What every protocol must say about the facts it carries.
#[derive(Default)]
struct Facts {
    ignition: bool,
    supply: bool,
    sos: bool,
    input1: bool,
    driver: bool,
}

const ALL: Facts = Facts {
    ignition: true,
    supply: true,
    sos: true,
    input1: true,
    driver: true,
};

fn check(name: &str, e: &TelemetryEvent, facts: &Facts) {
    let t = e.telemetry();
    if facts.ignition {
        assert_eq!(t.ignition, Some(true), "{name}: ignition");
    }
    if facts.supply {
        let v = t
            .external_power_volts
            .unwrap_or_else(|| panic!("{name}: supply"));
        assert!((v - 12.3).abs() < 1e-9, "{name}: supply {v}");
    }
    if facts.sos {
        assert!(e.has_alarm(Alarm::Sos), "{name}: alarms {:?}", e.alarms);
        assert_eq!(
            e.kind,
            avlgate::proto::EventKind::Alarm as i32,
            "{name}: kind"
        );
    }
    if facts.input1 {
        assert_eq!(t.digital_inputs.map(|m| m & 1), Some(1), "{name}: input 1");
    }
    if facts.driver {
        assert_eq!(t.driver_id.as_deref(), Some(DRIVER), "{name}: driver id");
    }
}

#[test]
fn teltonika() {
    let record = Record {
        timestamp_ms: 1_795_000_000_000,
        priority: 2, // panic
        longitude: 253_910_000,
        latitude: 546_820_000,
        altitude: 110,
        angle: 90,
        satellites: 9,
        speed: 42,
        event_io: 0,
        generation_type: None,
        io: vec![
            (239, IoValue::U8(1)),
            (1, IoValue::U8(1)),
            (66, IoValue::U16(12_300)),
            // The iButton's 8 bytes, least significant first as FMB devices send them.
            (78, IoValue::U64(0x0807_0605_0403_0201)),
        ],
    };
    let frame = tframe::encode_tcp(&avl::encode(Codec::C8E, &[record]));
    let e = events(&Teltonika, &[tframe::encode_login(IMEI), frame].concat());
    check("teltonika", &e[0], &ALL);
}

#[test]
fn wialon_ips() {
    let body = format!(
        "021226;120000;5441.0000;N;02523.0000;E;42;90;110;9;0.9;1;0;;{DRIVER};\
         ign:1:1,pwr_ext:2:12.3,SOS:1:1"
    );
    let stream = format!(
        "#L#{}\r\n#D#{}\r\n",
        wpacket::with_crc(&format!("2.0;{IMEI};NA")),
        wpacket::with_crc(&body)
    );
    let e = events(&Wialon, stream.as_bytes());
    check("wialon", &e[0], &ALL);
}

/// A GT06 GPS block: date-time, satellites, latitude, longitude, speed, course/status.
fn gt06_gps() -> Vec<u8> {
    let mut c = vec![26, 12, 2, 12, 0, 0, 0xC9];
    c.extend_from_slice(&((54.682 * 1_800_000.0) as u32).to_be_bytes());
    c.extend_from_slice(&((25.391 * 1_800_000.0) as u32).to_be_bytes());
    c.push(42);
    c.extend_from_slice(&(0x1400u16 | 90).to_be_bytes()); // fixed, north, east, 90°
    c
}

#[test]
fn gt06_alarm_and_x1() {
    let login = gt06_frame::encode(false, 0x01, &hex::decode("0356307042441013").unwrap(), 1);
    // 0x16 alarm: GPS, cell block with its length, status (terminal info: ACC on; voltage
    // level; GSM; alarm 0x01 SOS; language) and the driver's card.
    let mut alarm = gt06_gps();
    alarm.extend_from_slice(&[9, 0x00, 0xF6, 0x01, 0x12, 0x34, 0x00, 0x56, 0x78]);
    alarm.extend_from_slice(&[0b0000_0010, 4, 3, 0x01, 0x02]);
    alarm.extend_from_slice(&hex::decode(DRIVER).unwrap());
    // 0x34 X1: data/alarm, GPS, terminal info, odometer, cell, driver, battery, supply
    // 12.30 V, port info (no ADCs), inputs (input 1 high), outputs.
    let mut x1 = vec![0, 0, 0, 0];
    x1.extend_from_slice(&gt06_gps());
    x1.extend_from_slice(&[0, 0, 0, 0, 0x30, 0x39, 0x00, 0xF6, 0x01, 0x12, 0x34]);
    x1.extend_from_slice(&[0, 0, 0x56, 0x78, 0, 0, 0, 0]);
    x1.extend_from_slice(&410u16.to_be_bytes());
    x1.extend_from_slice(&1230u16.to_be_bytes());
    x1.extend_from_slice(&[0, 0, 0, 0, 0b01, 0]);
    let stream = [
        login.to_vec(),
        gt06_frame::encode(false, 0x16, &alarm, 2).to_vec(),
        gt06_frame::encode(false, 0x34, &x1, 3).to_vec(),
    ]
    .concat();
    let e = events(&Gt06, &stream);
    assert_eq!(e.len(), 2, "{e:#?}");
    check(
        "gt06 0x16",
        &e[0],
        &Facts {
            ignition: true,
            sos: true,
            driver: true,
            ..Default::default()
        },
    );
    check(
        "gt06 0x34",
        &e[1],
        &Facts {
            supply: true,
            input1: true,
            ..Default::default()
        },
    );
}
