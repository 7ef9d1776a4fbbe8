//! A JT/T 808-2019 terminal whose 20-digit terminal number is its IMEI, zero-padded (so the
//! gateway names it by its IMEI): it authenticates (`0102`, 2019 form) on every connection,
//! reports one fix as a `0200` and several as a `0704` batch, splits a batch longer than one
//! frame's body into packages, and answers the platform's commands the way terminals do:
//! `0201` with its last fix to a location query, `0500` to vehicle control, `0001` to
//! anything else. Its BCD times are GMT+8, the protocol's default time zone.

use bytes::BytesMut;

use super::frame::{self, Addressee, Split, Terminal, MAX_BODY, SUBPACKAGED, VERSION_FLAG};
use super::message;
use crate::protocol::civil::civil_from_secs;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};

/// 2019 protocol version byte.
const VERSION: u8 = 1;
/// Largest frame accepted from the server.
const MAX_FRAME: usize = 4096;
/// GMT+8, minutes.
const OFFSET_MINUTES: i64 = 480;

pub struct Jt808 {
    imei: String,
    terminal: Terminal,
    serial: u16,
    last: Option<Fix>,
    /// Engine cut by the last vehicle control.
    blocked: bool,
}

impl Jt808 {
    pub fn new(imei: &str) -> Self {
        // The simulator's ids are IMEIs; anything else gets number 0.
        let terminal = Terminal::from_id_2019(imei).unwrap_or(Terminal::ZERO_2019);
        Jt808 {
            imei: imei.to_string(),
            terminal,
            serial: 0,
            last: None,
            blocked: false,
        }
    }

    fn next_serial(&mut self) -> u16 {
        let s = self.serial;
        self.serial = self.serial.wrapping_add(1);
        s
    }

    fn me(&self) -> Addressee {
        Addressee {
            version: Some(VERSION),
            terminal: self.terminal,
        }
    }

    /// A terminal message (not sub-packaged).
    fn message(&mut self, id: u16, body: &[u8]) -> (Vec<u8>, u16) {
        let serial = self.next_serial();
        (frame::encode(id, &self.me(), serial, body).to_vec(), serial)
    }

    /// The platform's `8001` to our message `id` with `serial`.
    fn general_answer(&self, id: u16, serial: u16) -> Vec<u8> {
        let mut b = serial.to_be_bytes().to_vec();
        b.extend_from_slice(&id.to_be_bytes());
        b.push(0);
        frame::encode(message::GENERAL_ANSWER, &self.me(), 0, &b).to_vec()
    }

    /// A `0200` body for `f`.
    fn location(&self, f: &Fix) -> Vec<u8> {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(&0u32.to_be_bytes());
        let mut status: u32 = 0b11; // ACC on, fixed
        if f.latitude < 0.0 {
            status |= 1 << 2;
        }
        if f.longitude < 0.0 {
            status |= 1 << 3;
        }
        if self.blocked {
            status |= 1 << 10;
        }
        b.extend_from_slice(&status.to_be_bytes());
        b.extend_from_slice(&((f.latitude.abs() * 1e6).round() as u32).to_be_bytes());
        b.extend_from_slice(&((f.longitude.abs() * 1e6).round() as u32).to_be_bytes());
        b.extend_from_slice(&(f.altitude.round() as i16).to_be_bytes());
        b.extend_from_slice(&((f.speed_kmh * 10.0).round() as u16).to_be_bytes());
        b.extend_from_slice(&((f.course.round() as u16) % 360).to_be_bytes());
        let local = (f.time_ms / 1000) as i64 + OFFSET_MINUTES * 60;
        let (y, mo, d, h, mi, s) = civil_from_secs(local);
        let digits = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}", y.rem_euclid(100));
        b.extend_from_slice(&frame::bcd(&digits));
        // Mileage (0.1 km), signal (CSQ), satellites, supply and battery (vendor items 61
        // and 69, 0.01 V).
        b.extend_from_slice(&[0x01, 4]);
        b.extend_from_slice(&((f.odometer_m / 100) as u32).to_be_bytes());
        b.extend_from_slice(&[0x30, 1, f.gsm_level.min(5) * 6]);
        b.extend_from_slice(&[0x31, 1, f.satellites]);
        b.extend_from_slice(&[0x61, 2]);
        b.extend_from_slice(&(f.power_mv / 10).to_be_bytes());
        b.extend_from_slice(&[0x69, 2]);
        b.extend_from_slice(&(f.battery_mv / 10).to_be_bytes());
        b
    }

    /// A message as packages of at most `MAX_BODY` bytes each, with consecutive serials; the
    /// frames and the `8001` each gets.
    fn packaged(&mut self, id: u16, body: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let chunks: Vec<&[u8]> = body.chunks(MAX_BODY).collect();
        let total = chunks.len() as u16;
        let mut units = Vec::with_capacity(chunks.len());
        let mut expected = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let serial = self.next_serial();
            let mut m = id.to_be_bytes().to_vec();
            let attributes = chunk.len() as u16 | SUBPACKAGED | VERSION_FLAG;
            m.extend_from_slice(&attributes.to_be_bytes());
            m.push(VERSION);
            m.extend_from_slice(self.terminal.as_bytes());
            m.extend_from_slice(&serial.to_be_bytes());
            m.extend_from_slice(&total.to_be_bytes());
            m.extend_from_slice(&(i as u16 + 1).to_be_bytes());
            m.extend_from_slice(chunk);
            m.push(frame::xor(&m));
            units.push(frame::wrap(&m).to_vec());
            expected.push(self.general_answer(id, serial));
        }
        (units, expected)
    }

    /// The answer to a platform message, and a line saying what it was.
    fn answer(&mut self, m: &frame::Message) -> (String, Vec<u8>) {
        use super::command as c;
        let h = &m.header;
        let mut answered = h.serial.to_be_bytes().to_vec();
        match h.id {
            c::LOCATION_QUERY | c::VEHICLE_CONTROL => {
                if h.id == c::VEHICLE_CONTROL {
                    self.blocked = m.body.first().is_some_and(|b| b & 1 != 0);
                }
                let fix = self.last.unwrap_or(Fix {
                    time_ms: 1_750_000_000_000,
                    latitude: 54.68,
                    longitude: 25.28,
                    altitude: 110.0,
                    speed_kmh: 0.0,
                    course: 0.0,
                    satellites: 9,
                    hdop: 1.0,
                    odometer_m: 0,
                    power_mv: 12_300,
                    battery_mv: 4_100,
                    gsm_level: 4,
                });
                answered.extend_from_slice(&self.location(&fix));
                let id = if h.id == c::LOCATION_QUERY {
                    message::LOCATION_ANSWER
                } else {
                    message::VEHICLE_CONTROL_ANSWER
                };
                let text = format!("{:04x} {}", h.id, hex::encode(&m.body));
                (text, self.message(id, &answered).0)
            }
            _ => {
                answered.extend_from_slice(&h.id.to_be_bytes());
                answered.push(0);
                let text = match h.id {
                    c::TEXT => {
                        String::from_utf8_lossy(m.body.get(2..).unwrap_or_default()).into_owned()
                    }
                    _ => format!("{:04x} {}", h.id, hex::encode(&m.body)),
                };
                (text, self.message(message::TERMINAL_ANSWER, &answered).0)
            }
        }
    }
}

impl DeviceCodec for Jt808 {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let code = self.imei.as_bytes();
        let mut body = vec![code.len().min(255) as u8];
        body.extend_from_slice(code.get(..255.min(code.len())).unwrap_or_default());
        let mut imei = [b'0'; 15];
        for (d, s) in imei.iter_mut().rev().zip(self.imei.bytes().rev()) {
            *d = s;
        }
        body.extend_from_slice(&imei);
        let mut version = [0u8; 20];
        version[..9].copy_from_slice(b"avlgate-1");
        body.extend_from_slice(&version);
        let (frame, serial) = self.message(message::AUTHENTICATION, &body);
        let reply = self.general_answer(message::AUTHENTICATION, serial);
        Some((frame, reply))
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        self.last = fixes.last().copied().or(self.last);
        let (units, expected) = match fixes {
            [one] => {
                let body = self.location(one);
                let (f, serial) = self.message(message::LOCATION, &body);
                (
                    vec![f],
                    vec![self.general_answer(message::LOCATION, serial)],
                )
            }
            _ => {
                let mut body = (fixes.len() as u16).to_be_bytes().to_vec();
                body.push(0);
                for f in fixes {
                    let l = self.location(f);
                    body.extend_from_slice(&(l.len() as u16).to_be_bytes());
                    body.extend_from_slice(&l);
                }
                if body.len() <= MAX_BODY {
                    let (f, serial) = self.message(message::BATCH, &body);
                    (vec![f], vec![self.general_answer(message::BATCH, serial)])
                } else {
                    self.packaged(message::BATCH, &body)
                }
            }
        };
        Batch {
            frames: units.len() as u32,
            records: fixes.len() as u32,
            units,
            expected,
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        match frame::split(buf, MAX_FRAME) {
            Split::Incomplete => Ok(None),
            Split::Message(m, n) => {
                let bytes = buf.split_to(n.min(buf.len()));
                match m.header.id {
                    message::GENERAL_ANSWER => Ok(Some(Incoming::Reply(bytes.to_vec()))),
                    id if id >= 0x8000 => {
                        let (text, answer) = self.answer(&m);
                        Ok(Some(Incoming::Command { text, answer }))
                    }
                    _ => Ok(Some(Incoming::Ignored(
                        "a terminal message from the server",
                    ))),
                }
            }
            Split::Skip(n, why) => Err(DeviceError(format!("{n} bytes dropped: {why:?}"))),
            Split::Text(t, _) => Err(DeviceError(format!(
                "a text frame from the server: {}",
                String::from_utf8_lossy(&t)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::{
        AnswerOutcome, CommandAnswer, CommandRequest, ProtocolConfig, ProtocolModule,
    };
    use crate::simulate::track::Track;
    use std::time::SystemTime;

    const IMEI: &str = "356307042441013";

    fn session(t: Transport) -> Box<dyn crate::protocol::ProtocolSession> {
        crate::protocol::jt808::Jt808.new_session(t, &ProtocolConfig::default())
    }

    fn decode_one(
        s: &mut dyn crate::protocol::ProtocolSession,
        bytes: &[u8],
    ) -> crate::protocol::Frame {
        let mut buf = BytesMut::from(bytes);
        let f = s.decode(&mut buf, SystemTime::now()).unwrap().unwrap();
        assert!(buf.is_empty());
        f
    }

    #[test]
    fn login_single_reports_batches_and_packages_decode_with_the_expected_replies() {
        for transport in [Transport::Tcp, Transport::Udp] {
            let mut s = session(transport);
            let mut d = Jt808::new(IMEI);
            let (login, ack) = d.login().unwrap();
            let f = decode_one(s.as_mut(), &login);
            assert_eq!(f.login.as_deref(), Some(IMEI));
            assert_eq!(f.reply.as_deref(), Some(&ack[..]));
            let t = Track::new(5, 1_700_000_000_000);
            for n in [1usize, 3, 40] {
                let fixes: Vec<Fix> = (0..n as u64)
                    .map(|i| t.at(1_700_000_000_000 + i * 1000))
                    .collect();
                let b = d.batch(&fixes);
                assert_eq!(b.records as usize, n);
                assert_eq!(b.units.len(), b.expected.len());
                if n == 40 {
                    assert!(b.units.len() > 1, "40 records need packages");
                }
                let mut events = Vec::new();
                for (unit, ack) in b.units.iter().zip(&b.expected) {
                    let f = decode_one(s.as_mut(), unit);
                    assert_eq!(f.reply.as_deref(), Some(&ack[..]));
                    events.extend(f.events);
                }
                assert_eq!(events.len(), n);
                for (e, fix) in events.iter().zip(&fixes) {
                    assert_eq!(e.kind, EventKind::Position as i32);
                    let p = e.position.as_ref().unwrap();
                    assert!(p.valid);
                    assert!((p.latitude - fix.latitude).abs() < 1e-6);
                    assert!((p.longitude - fix.longitude).abs() < 1e-6);
                    assert_eq!(p.satellites, Some(u32::from(fix.satellites)));
                    assert_eq!(
                        e.device_time.unwrap().seconds,
                        (fix.time_ms / 1000) as i64,
                        "GMT+8 both ways"
                    );
                    let tm = e.telemetry();
                    assert_eq!(tm.ignition, Some(true));
                    assert_eq!(
                        tm.odometer_meters,
                        Some((fix.odometer_m / 100 * 100) as f64)
                    );
                    assert!(
                        (tm.external_power_volts.unwrap() - f64::from(fix.power_mv / 10) / 100.0)
                            .abs()
                            < 1e-9
                    );
                }
            }
        }
    }

    #[test]
    fn commands_are_answered_with_their_serial_and_id() {
        let mut s = session(Transport::Tcp);
        let mut d = Jt808::new(IMEI);
        let (login, _) = d.login().unwrap();
        decode_one(s.as_mut(), &login);
        for (request, want) in [
            (
                CommandRequest::Text("STATUS#".into()),
                AnswerOutcome::Text("success".into()),
            ),
            (
                CommandRequest::Reboot,
                AnswerOutcome::Text("success".into()),
            ),
            (
                CommandRequest::SetReportInterval { seconds: 30 },
                AnswerOutcome::Text("success".into()),
            ),
        ] {
            let cmd = s.encode_command(&request).unwrap();
            let mut buf = BytesMut::from(&cmd[..]);
            let Some(Incoming::Command { answer, .. }) = d.parse(&mut buf).unwrap() else {
                panic!("not a command");
            };
            let f = decode_one(s.as_mut(), &answer);
            assert_eq!(
                f.answers,
                vec![CommandAnswer {
                    tag: s.last_command_tag(),
                    outcome: want
                }]
            );
            assert_eq!(f.events[0].kind, EventKind::CommandResponse as i32);
            assert_eq!(f.reply, None, "answers are not answered");
        }
        // A location query is answered with a location.
        let cmd = s.encode_command(&CommandRequest::PositionRequest).unwrap();
        let Some(Incoming::Command { answer, .. }) =
            d.parse(&mut BytesMut::from(&cmd[..])).unwrap()
        else {
            panic!("not a command");
        };
        let f = decode_one(s.as_mut(), &answer);
        assert_eq!(f.answers.len(), 1);
        assert_eq!(f.answers[0].tag, s.last_command_tag());
        assert_eq!(f.events[0].kind, EventKind::Position as i32);
        // Engine stop: the next report says the engine is blocked.
        let cmd = s.encode_command(&CommandRequest::EngineStop).unwrap();
        let Some(Incoming::Command { answer, .. }) =
            d.parse(&mut BytesMut::from(&cmd[..])).unwrap()
        else {
            panic!("not a command");
        };
        let f = decode_one(s.as_mut(), &answer);
        assert_eq!(f.answers[0].tag, s.last_command_tag());
        assert_eq!(f.events[0].telemetry().engine_blocked, Some(true));
    }

    #[test]
    fn garbage_from_the_server_is_an_error() {
        let mut d = Jt808::new(IMEI);
        assert!(d.parse(&mut BytesMut::from(&b"garbage!"[..])).is_err());
    }
}
