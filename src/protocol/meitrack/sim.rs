//! A Meitrack device: its records go up as `CCC` binary batches (version `0x0102`, 52-byte
//! records, up to 18 a frame as devices send them), each confirmed with `CCC,<records>` under
//! the batch's flag; commands are
//! answered under the command's flag, `A10` with an `AAA` report of event 34 and anything else
//! with `<command>,OK`.

use bytes::BytesMut;

use crate::protocol::civil::civil_from_secs as civil;
use crate::protocol::meitrack::binary::{CCC_RECORD, CCC_VERSION};
use crate::protocol::meitrack::command::{next_flag, LOCATE};
use crate::protocol::meitrack::frame::{self, Split};
use crate::protocol::meitrack::record::EPOCH_2000;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 4096;
/// The timed-report event code.
const TIMED_REPORT: u8 = 35;
/// Records per `CCC` frame, at most: what devices send (about 1 KiB).
const RECORDS_PER_FRAME: usize = 18;
/// The cell the device reports (Lithuania, MNC 2).
const CELL: (u16, u16, u16, u16) = (246, 2, 0x2A1F, 0x5C11);

pub struct Meitrack {
    imei: String,
    flag: u8,
    run_time_s: u32,
    last: Option<Fix>,
}

impl Meitrack {
    pub fn new(imei: &str, _udp: bool) -> Self {
        Meitrack {
            imei: imei.to_string(),
            flag: b'A',
            run_time_s: 0,
            last: None,
        }
    }

    fn take_flag(&mut self) -> u8 {
        let f = self.flag;
        self.flag = next_flag(f);
        f
    }

    /// CSQ 0–31 from the simulator's 0–5 level.
    fn csq(f: &Fix) -> u8 {
        (u32::from(f.gsm_level.min(5)) * 31 / 5) as u8
    }

    /// One 52-byte `CCC` record.
    fn record(&mut self, f: &Fix) -> Vec<u8> {
        self.run_time_s = self.run_time_s.wrapping_add(10);
        let mut r = Vec::with_capacity(CCC_RECORD);
        r.push(TIMED_REPORT);
        r.extend_from_slice(&((f.latitude * 1e6).round() as i32).to_le_bytes());
        r.extend_from_slice(&((f.longitude * 1e6).round() as i32).to_le_bytes());
        let secs = (f.time_ms / 1000) as i64 - EPOCH_2000;
        r.extend_from_slice(&(secs.max(0) as u32).to_le_bytes());
        r.extend_from_slice(&[1, f.satellites, Self::csq(f)]);
        r.extend_from_slice(&(f.speed_kmh.round() as u16).to_le_bytes());
        r.extend_from_slice(&(f.course.round() as u16 % 360).to_le_bytes());
        r.extend_from_slice(&((f.hdop * 10.0).round() as u16).to_le_bytes());
        r.extend_from_slice(&(f.altitude.round() as i16).to_le_bytes());
        r.extend_from_slice(&(f.odometer_m as u32).to_le_bytes());
        r.extend_from_slice(&self.run_time_s.to_le_bytes());
        for v in [CELL.0, CELL.1, CELL.2, CELL.3] {
            r.extend_from_slice(&v.to_le_bytes());
        }
        r.extend_from_slice(&0u16.to_le_bytes()); // status
        r.extend_from_slice(&0u16.to_le_bytes()); // AD1
        r.extend_from_slice(&(f.battery_mv / 10).to_le_bytes());
        r.extend_from_slice(&(f.power_mv / 10).to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes()); // geofence
        r
    }

    /// The `AAA` report that answers `A10` (event 34), with the last fix.
    fn locate_answer(&self, flag: u8) -> Vec<u8> {
        let f = self.last.unwrap_or(Fix {
            time_ms: (EPOCH_2000 as u64) * 1000,
            latitude: 0.0,
            longitude: 0.0,
            altitude: 0.0,
            speed_kmh: 0.0,
            course: 0.0,
            satellites: 0,
            hdop: 0.0,
            odometer_m: 0,
            power_mv: 0,
            battery_mv: 0,
            gsm_level: 0,
        });
        let (y, mo, d, h, mi, s) = civil((f.time_ms / 1000) as i64);
        let text = format!(
            "AAA,34,{:.6},{:.6},{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02},A,{},{},{:.0},{:.0},{:.1},{:.0},{},{},{}|{}|{:04X}|{:04X},0000,0000|0000|0000|{:04X}|{:04X},,",
            f.latitude,
            f.longitude,
            y.rem_euclid(100),
            f.satellites,
            Self::csq(&f),
            f.speed_kmh,
            f.course,
            f.hdop,
            f.altitude,
            f.odometer_m,
            self.run_time_s,
            CELL.0,
            CELL.1,
            CELL.2,
            CELL.3,
            f.battery_mv / 10,
            f.power_mv / 10,
        );
        frame::encode_device(flag, &self.imei, text.as_bytes()).to_vec()
    }
}

impl DeviceCodec for Meitrack {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        None
    }

    /// One `CCC` frame per [`RECORDS_PER_FRAME`] fixes, each confirmed on its own.
    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let mut units = Vec::new();
        let mut expected = Vec::new();
        for (i, part) in fixes.chunks(RECORDS_PER_FRAME).enumerate() {
            let mut data = Vec::with_capacity(12 + part.len() * CCC_RECORD);
            data.extend_from_slice(b"CCC,");
            data.extend_from_slice(&CCC_VERSION.to_le_bytes());
            data.extend_from_slice(&(CCC_RECORD as u16).to_le_bytes());
            // The records still cached, these included.
            let remaining = (fixes.len() - i * RECORDS_PER_FRAME) as u32;
            data.extend_from_slice(&remaining.to_le_bytes());
            for f in part {
                let r = self.record(f);
                data.extend_from_slice(&r);
            }
            let flag = self.take_flag();
            units.push(frame::encode_device(flag, &self.imei, &data).to_vec());
            let confirm = format!("CCC,{}", part.len());
            expected.push(frame::encode(flag, &self.imei, confirm.as_bytes()).to_vec());
        }
        self.last = fixes.last().copied().or(self.last);
        Batch {
            frames: units.len() as u32,
            records: fixes.len() as u32,
            units,
            expected,
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        match frame::split_server(buf, MAX_FRAME) {
            Split::Incomplete => Ok(None),
            Split::Skip(n, why) => Err(DeviceError(format!("{n} bytes dropped: {why:?}"))),
            Split::Frame(f, total) => {
                let bytes = buf.split_to(total.min(buf.len()));
                if f.imei != self.imei {
                    return Ok(Some(Incoming::Ignored("a frame for another device")));
                }
                match &f.command {
                    b"CCC" => Ok(Some(Incoming::Reply(bytes.to_vec()))),
                    b"D00" => Ok(Some(Incoming::Ignored("a photo request: no camera"))),
                    cmd => {
                        let name = f.command_str();
                        let text = if f.data.is_empty() {
                            name.to_string()
                        } else {
                            format!("{name},{}", String::from_utf8_lossy(&f.data))
                        };
                        let answer = if cmd == LOCATE {
                            self.locate_answer(f.flag)
                        } else {
                            frame::encode_device(
                                f.flag,
                                &self.imei,
                                format!("{name},OK").as_bytes(),
                            )
                            .to_vec()
                        };
                        Ok(Some(Incoming::Command { text, answer }))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::{AnswerOutcome, CommandRequest, ProtocolConfig, ProtocolModule};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn fix(i: u64) -> Fix {
        Fix {
            time_ms: 1_750_000_000_000 + i * 10_000,
            latitude: 54.682 + i as f64 * 1e-4,
            longitude: -25.391,
            altitude: -3.0,
            speed_kmh: 42.0,
            course: 90.0,
            satellites: 9,
            hdop: 0.8,
            odometer_m: 120_000 + i,
            power_mv: 12_300,
            battery_mv: 4_100,
            gsm_level: 4,
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_750_000_000)
    }

    #[test]
    fn the_gateway_decodes_and_confirms_what_the_device_sends() {
        for t in [Transport::Tcp, Transport::Udp] {
            let mut dev = Meitrack::new("356307042441013", t == Transport::Udp);
            let mut s = super::super::Meitrack.new_session(t, &ProtocolConfig::default());
            for round in 0..3u64 {
                let fixes: Vec<Fix> = (0..4).map(|i| fix(round * 4 + i)).collect();
                let b = dev.batch(&fixes);
                let mut buf = BytesMut::from(&b.units[0][..]);
                let f = s.decode(&mut buf, now()).unwrap().unwrap();
                assert!(buf.is_empty());
                assert_eq!(f.events.len(), 4);
                assert_eq!(f.reply.as_deref(), Some(&b.expected[0][..]));
                assert_eq!(f.login.is_some(), round == 0, "identified once");
                let e = &f.events[3];
                let p = e.position.as_ref().unwrap();
                assert!((p.latitude - fixes[3].latitude).abs() < 1e-6);
                assert_eq!(p.altitude, Some(-3.0));
                assert_eq!(
                    e.device_time.unwrap().seconds,
                    1_750_000_000 + (round * 4 + 3) as i64 * 10
                );
                assert_eq!(e.telemetry().external_power_volts, Some(12.3));
                // The device reads the confirmation back as a reply.
                let mut back = BytesMut::from(&b.expected[0][..]);
                assert_eq!(
                    dev.parse(&mut back),
                    Ok(Some(Incoming::Reply(b.expected[0].clone())))
                );
            }
        }
    }

    #[test]
    fn large_batches_go_in_frames_of_devices_size() {
        let mut dev = Meitrack::new("356307042441013", false);
        let mut s = super::super::Meitrack.new_session(Transport::Tcp, &ProtocolConfig::default());
        let fixes: Vec<Fix> = (0..40).map(fix).collect();
        let b = dev.batch(&fixes);
        assert_eq!((b.frames, b.records, b.units.len()), (3, 40, 3));
        let mut records = 0;
        for (u, want) in b.units.iter().zip(&b.expected) {
            assert!(u.len() < 1100, "{}", u.len());
            let f = s
                .decode(&mut BytesMut::from(&u[..]), now())
                .unwrap()
                .unwrap();
            assert_eq!(f.reply.as_deref(), Some(&want[..]));
            records += f.events.len();
        }
        assert_eq!(records, 40);
    }

    #[test]
    fn commands_are_answered_under_their_flag_and_matched_by_tag() {
        let mut dev = Meitrack::new("356307042441013", false);
        let mut s = super::super::Meitrack.new_session(Transport::Tcp, &ProtocolConfig::default());
        let b = dev.batch(&[fix(0)]);
        s.decode(&mut BytesMut::from(&b.units[0][..]), now())
            .unwrap();
        for (req, text, want) in [
            (CommandRequest::PositionRequest, "A10", "AAA,34,"),
            (CommandRequest::EngineStop, "C01,0,12222", "C01,OK"),
            (CommandRequest::Text("B21,1".into()), "B21,1", "B21,OK"),
        ] {
            let bytes = s.encode_command(&req).unwrap();
            let tag = s.last_command_tag();
            let mut buf = BytesMut::from(&bytes[..]);
            let Ok(Some(Incoming::Command { text: t, answer })) = dev.parse(&mut buf) else {
                panic!("a command");
            };
            assert_eq!(t, text);
            let f = s
                .decode(&mut BytesMut::from(&answer[..]), now())
                .unwrap()
                .unwrap();
            assert_eq!(f.answers.len(), 1, "{text}");
            assert_eq!(f.answers[0].tag, tag);
            let AnswerOutcome::Text(a) = &f.answers[0].outcome else {
                panic!()
            };
            assert!(a.starts_with(want), "{a}");
            let kind = if text == "A10" {
                EventKind::Position
            } else {
                EventKind::CommandResponse
            };
            assert_eq!(f.events[0].kind, kind as i32);
        }
    }
}
