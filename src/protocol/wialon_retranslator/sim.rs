//! A Wialon server retranslating one unit (the simulated device's id): one packet per fix
//! (position, external and internal power, inputs, ignition, GSM level, mileage, HDOP and a
//! text), each answered `0x11`. Real retranslators carry many units on one connection; the
//! simulator's one unit per connection keeps `avlgate simulate`'s per-device accounting,
//! and the conformance test drives several units over one connection.

use bytes::{Buf, BytesMut};

use super::packet::{self, flag, Block, Packet, PosInfo, Value};
use super::ACK;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};

pub struct Retranslator {
    unit: String,
}

impl Retranslator {
    pub fn new(unit: &str) -> Self {
        Retranslator {
            unit: unit.to_string(),
        }
    }

    /// The packet of one fix, size field included.
    pub fn packet(unit: &str, f: &Fix) -> Vec<u8> {
        let mileage_km = f.odometer_m as f64 / 1000.0;
        let hdop = (f.hdop * 10.0).round() / 10.0;
        let blocks = vec![
            Block {
                hidden: 1,
                name: packet::POSINFO,
                value: Value::Position(PosInfo {
                    longitude: f.longitude,
                    latitude: f.latitude,
                    altitude: f.altitude.round(),
                    speed: f.speed_kmh.round().clamp(0.0, f64::from(u16::MAX)) as u16,
                    course: (f.course.round() as u16) % 360,
                    satellites: f.satellites,
                }),
            },
            Block {
                hidden: 0,
                name: "pwr_ext",
                value: Value::Double(f64::from(f.power_mv) / 1000.0),
            },
            Block {
                hidden: 0,
                name: "pwr_int",
                value: Value::Double(f64::from(f.battery_mv) / 1000.0),
            },
            Block {
                hidden: 1,
                name: "avl_inputs",
                value: Value::Int(1),
            },
            Block {
                hidden: 0,
                name: "ign",
                value: Value::Int(1),
            },
            Block {
                hidden: 0,
                name: "gsm",
                value: Value::Int(f.gsm_level.into()),
            },
            Block {
                hidden: 0,
                name: "mileage",
                value: Value::Double(mileage_km),
            },
            Block {
                hidden: 0,
                name: "hdop",
                value: Value::Double(hdop),
            },
            Block {
                hidden: 0,
                name: "fw",
                value: Value::Text(b"avlgate-sim"),
            },
        ];
        packet::encode(&Packet {
            unit: unit.as_bytes(),
            time: u32::try_from(f.time_ms / 1000).unwrap_or(u32::MAX),
            flags: flag::POSITION | flag::INPUTS,
            blocks,
        })
    }
}

impl DeviceCodec for Retranslator {
    /// A Wialon server does not log in: every packet names its unit.
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        None
    }

    /// One packet per fix; the server answers each with `0x11`.
    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let units: Vec<Vec<u8>> = fixes.iter().map(|f| Self::packet(&self.unit, f)).collect();
        let n = u32::try_from(units.len()).unwrap_or(u32::MAX);
        Batch {
            expected: vec![vec![ACK]; units.len()],
            units,
            frames: n,
            records: n,
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        match buf.first() {
            None => Ok(None),
            Some(&ACK) => {
                buf.advance(1);
                Ok(Some(Incoming::Reply(vec![ACK])))
            }
            Some(b) => Err(DeviceError(format!(
                "a Retranslator server answers 0x11 only, not {b:#04x}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::{ProtocolConfig, ProtocolModule};
    use crate::simulate::track::Track;

    fn fixes(n: u64) -> Vec<Fix> {
        let t = Track::new(9, 1_700_000_000_000);
        (0..n).map(|i| t.at(1_700_000_000_000 + i * 1000)).collect()
    }

    #[test]
    fn packets_decode_in_the_gateway_with_the_expected_answers() {
        let mut s = super::super::WialonRetranslator
            .new_session(Transport::Tcp, &ProtocolConfig::default());
        let mut d = Retranslator::new("350000000000001");
        assert!(d.login().is_none());
        let b = d.batch(&fixes(5));
        assert_eq!((b.frames, b.records, b.units.len()), (5, 5, 5));
        let mut buf = BytesMut::from(&b.units.concat()[..]);
        for (i, expected) in b.expected.iter().enumerate() {
            let f = s
                .decode(&mut buf, std::time::SystemTime::now())
                .unwrap()
                .unwrap();
            assert_eq!(f.reply.as_deref(), Some(&expected[..]));
            assert_eq!(f.relayed.as_deref(), Some("350000000000001"));
            assert!(f.login.is_none());
            let e = &f.events[0];
            assert_eq!(e.kind, EventKind::Position as i32, "packet {i}");
            let p = e.position.as_ref().unwrap();
            assert!(p.valid && (p.latitude - 54.6872).abs() < 1.0, "{p:?}");
            let t = e.telemetry();
            assert_eq!(t.ignition, Some(true));
            assert_eq!(t.digital_inputs, Some(1));
            assert!(t.external_power_volts.is_some() && t.battery_volts.is_some());
            assert!(p.hdop.is_some());
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn the_server_answers_0x11_and_nothing_else() {
        let mut d = Retranslator::new("1");
        let mut buf = BytesMut::from(&[ACK, ACK][..]);
        assert_eq!(d.parse(&mut buf).unwrap(), Some(Incoming::Reply(vec![ACK])));
        assert_eq!(d.parse(&mut buf).unwrap(), Some(Incoming::Reply(vec![ACK])));
        assert_eq!(d.parse(&mut buf).unwrap(), None);
        let mut junk = BytesMut::from(&b"\x01"[..]);
        assert!(d.parse(&mut junk).is_err());
    }
}
