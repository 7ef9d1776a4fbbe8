//! A Concox GT06-family device: `0x01` login (IMEI in BCD), `0x22` GPS+LBS packets each
//! acknowledged with the packet's protocol number and serial, and `0x80` online commands
//! answered with a `0x21` reply carrying the server flag back.

use bytes::BytesMut;

use crate::protocol::civil::civil_from_secs as civil;
use crate::protocol::gt06::frame;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};

const LOGIN: u8 = 0x01;
const GPS_LBS: u8 = 0x22;
const ONLINE_COMMAND: u8 = 0x80;
const COMMAND_REPLY: u8 = 0x21;
/// Largest frame accepted from the server.
const MAX_FRAME: usize = 4096;
/// Type identification code and time zone/language sent after the IMEI in the login.
const TYPE_ID: u16 = 0x3620;
const TIMEZONE: u16 = 0x3200;

pub struct Gt06 {
    imei: String,
    serial: u16,
    last: Option<Fix>,
}

impl Gt06 {
    pub fn new(imei: &str) -> Self {
        Gt06 {
            imei: imei.to_string(),
            serial: 0,
            last: None,
        }
    }

    fn next_serial(&mut self) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
    }

    /// The IMEI as 8 bytes of BCD with a leading zero nibble.
    fn imei_bcd(&self) -> [u8; 8] {
        let digits: Vec<u8> = format!("{:0>16}", self.imei)
            .bytes()
            .map(|b| b.wrapping_sub(b'0') & 0x0F)
            .collect();
        let mut out = [0u8; 8];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (digits.get(2 * i).copied().unwrap_or(0) << 4)
                | digits.get(2 * i + 1).copied().unwrap_or(0);
        }
        out
    }

    /// The `0x22` content: time, GPS, LBS, ACC, upload mode, re-upload flag.
    fn gps_lbs(f: &Fix) -> Vec<u8> {
        let (y, mo, d, h, mi, s) = civil((f.time_ms / 1000) as i64);
        let mut c = Vec::with_capacity(29);
        c.extend_from_slice(&[
            (y.rem_euclid(100)) as u8,
            mo as u8,
            d as u8,
            h as u8,
            mi as u8,
            s as u8,
        ]);
        // High nibble: length of the GPS block (12); low nibble: satellites.
        c.push(0xC0 | (f.satellites.min(15)));
        c.extend_from_slice(&((f.latitude.abs() * 1_800_000.0).round() as u32).to_be_bytes());
        c.extend_from_slice(&((f.longitude.abs() * 1_800_000.0).round() as u32).to_be_bytes());
        c.push(f.speed_kmh.round().min(255.0) as u8);
        let mut flags = (f.course.round() as u16 % 360) & 0x03FF;
        flags |= 1 << 12; // GPS fixed
        if f.latitude >= 0.0 {
            flags |= 1 << 10;
        }
        if f.longitude < 0.0 {
            flags |= 1 << 11;
        }
        c.extend_from_slice(&flags.to_be_bytes());
        // LBS: MCC 246 (Lithuania), MNC 2, LAC, cell id (u24).
        c.extend_from_slice(&246u16.to_be_bytes());
        c.push(2);
        c.extend_from_slice(&0x2A1Fu16.to_be_bytes());
        c.extend_from_slice(&[0x00, 0x5C, 0x11]);
        // ACC on, upload mode 0 (fixed interval), real-time (not re-uploaded).
        c.extend_from_slice(&[0x01, 0x00, 0x00]);
        c
    }

    fn answer_text(&self, cmd: &str) -> String {
        let upper = cmd.trim().to_ascii_uppercase();
        if upper.starts_with("RELAY,1") || upper.starts_with("DYD") {
            return "Cut off the fuel supply: Success!".into();
        }
        if upper.starts_with("RELAY,0") || upper.starts_with("HFYD") {
            return "Restore fuel supply: Success!".into();
        }
        if upper.starts_with("WHERE") || upper.starts_with("URL") {
            return match self.last {
                Some(f) => {
                    let (y, mo, d, h, mi, s) = civil((f.time_ms / 1000) as i64);
                    format!(
                        "Current position!Lat:{}{:.6},Lon:{}{:.6},Course:{:.2},Speed:{:.2},DateTime:{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}",
                        if f.latitude >= 0.0 { 'N' } else { 'S' },
                        f.latitude.abs(),
                        if f.longitude >= 0.0 { 'E' } else { 'W' },
                        f.longitude.abs(),
                        f.course,
                        f.speed_kmh
                    )
                }
                None => "Positioning...".into(),
            };
        }
        if upper.starts_with("STATUS") {
            return "Battery:5,GPRS:Link Up,GSM Signal Level:Strong,GPS:Successful positioning,ACC:ON,Defense:OFF".into();
        }
        if upper.starts_with("VERSION") {
            return format!("[VERSION]GT06N_20_60DC_D23_R0_V02 IMEI:{}", self.imei);
        }
        "OK!".into()
    }

    /// An online command (`0x80`) and its `0x21` answer with the same server flag.
    fn command(&mut self, content: &[u8]) -> Incoming {
        let (Some(&len), Some(flag)) = (content.first(), content.get(1..5)) else {
            return Incoming::Ignored("online command shorter than its header");
        };
        let text_len = usize::from(len).saturating_sub(4);
        let text = content
            .get(5..5 + text_len)
            .or_else(|| content.get(5..))
            .unwrap_or_default();
        let text = String::from_utf8_lossy(text).into_owned();
        let mut reply = Vec::with_capacity(64);
        reply.extend_from_slice(flag);
        reply.push(0x01); // ASCII
        reply.extend_from_slice(self.answer_text(&text).as_bytes());
        let serial = self.next_serial();
        Incoming::Command {
            text,
            answer: frame::encode(false, COMMAND_REPLY, &reply, serial).to_vec(),
        }
    }
}

impl DeviceCodec for Gt06 {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut content = self.imei_bcd().to_vec();
        content.extend_from_slice(&TYPE_ID.to_be_bytes());
        content.extend_from_slice(&TIMEZONE.to_be_bytes());
        let serial = self.next_serial();
        Some((
            frame::encode(false, LOGIN, &content, serial).to_vec(),
            frame::ack(false, LOGIN, serial).to_vec(),
        ))
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let mut units = Vec::with_capacity(fixes.len());
        let mut expected = Vec::with_capacity(fixes.len());
        for f in fixes {
            let serial = self.next_serial();
            units.push(frame::encode(false, GPS_LBS, &Self::gps_lbs(f), serial).to_vec());
            expected.push(frame::ack(false, GPS_LBS, serial).to_vec());
        }
        self.last = fixes.last().copied();
        let n = units.len() as u32;
        Batch {
            units,
            expected,
            frames: n,
            records: n,
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        match frame::split(buf, MAX_FRAME) {
            frame::Split::Incomplete => Ok(None),
            frame::Split::Skip(n, why) => Err(DeviceError(format!("{n} bytes dropped: {why:?}"))),
            frame::Split::Frame(f, total) => {
                let bytes = buf.split_to(total.min(buf.len()));
                if f.protocol == ONLINE_COMMAND {
                    Ok(Some(self.command(&f.content)))
                } else {
                    Ok(Some(Incoming::Reply(bytes.to_vec())))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::{AnswerOutcome, CommandAnswer, CommandRequest, ProtocolConfig};
    use crate::simulate::track::Track;

    #[test]
    fn login_and_positions_decode_in_the_gateway_with_the_expected_acks() {
        for transport in [Transport::Tcp, Transport::Udp] {
            let mut s =
                crate::protocol::gt06::MODULE.new_session(transport, &ProtocolConfig::default());
            let mut d = Gt06::new("864717003283581");
            let (login, ack) = d.login().unwrap();
            let mut buf = BytesMut::from(&login[..]);
            let f = s
                .decode(&mut buf, std::time::SystemTime::now())
                .unwrap()
                .unwrap();
            assert_eq!(f.login.as_deref(), Some("864717003283581"));
            assert_eq!(f.reply.as_deref(), Some(&ack[..]));
            let t = Track::new(5, 1_700_000_000_000);
            let fixes: Vec<Fix> = (0..3).map(|i| t.at(1_700_000_000_000 + i * 1000)).collect();
            let b = d.batch(&fixes);
            assert_eq!((b.frames, b.records, b.units.len()), (3, 3, 3));
            for (i, (unit, ack)) in b.units.iter().zip(&b.expected).enumerate() {
                let mut buf = BytesMut::from(&unit[..]);
                let f = s
                    .decode(&mut buf, std::time::SystemTime::now())
                    .unwrap()
                    .unwrap();
                assert_eq!(f.reply.as_deref(), Some(&ack[..]));
                let e = &f.events[0];
                assert_eq!(e.kind, EventKind::Position as i32);
                let p = e.position.as_ref().unwrap();
                assert!(p.valid);
                assert!((p.latitude - fixes[i].latitude).abs() < 1e-6);
                assert!((p.longitude - fixes[i].longitude).abs() < 1e-6);
                assert_eq!(p.course, Some((fixes[i].course.round() % 360.0).floor()));
                assert_eq!(p.satellites, Some(u32::from(fixes[i].satellites)));
            }
        }
    }

    #[test]
    fn online_command_is_answered_with_the_server_flag() {
        let mut server =
            crate::protocol::gt06::MODULE.new_session(Transport::Tcp, &ProtocolConfig::default());
        let mut d = Gt06::new("864717003283581");
        let (login, _) = d.login().unwrap();
        server
            .decode(
                &mut BytesMut::from(&login[..]),
                std::time::SystemTime::now(),
            )
            .unwrap();
        let cmd = server
            .encode_command(&CommandRequest::Text("Relay,1#".into()))
            .unwrap();
        let mut buf = BytesMut::from(&cmd[..]);
        let Some(Incoming::Command { text, answer }) = d.parse(&mut buf).unwrap() else {
            panic!("not a command");
        };
        assert_eq!(text, "Relay,1#");
        let f = server
            .decode(
                &mut BytesMut::from(&answer[..]),
                std::time::SystemTime::now(),
            )
            .unwrap()
            .unwrap();
        let e = &f.events[0];
        assert_eq!(e.kind, EventKind::CommandResponse as i32);
        assert_eq!(e.text.as_deref(), Some("Cut off the fuel supply: Success!"));
        // The answer echoes the server flag of the command (the first one: 1), so the
        // session's command tracker matches it.
        assert_eq!(
            f.answers,
            vec![CommandAnswer {
                tag: server.last_command_tag(),
                outcome: AnswerOutcome::Text("Cut off the fuel supply: Success!".into()),
            }]
        );
        assert_eq!(server.last_command_tag(), Some(1));
        assert_eq!(f.reply, None, "0x21 is not acknowledged");
    }

    #[test]
    fn garbage_from_the_server_is_an_error() {
        let mut d = Gt06::new("864717003283581");
        let mut buf = BytesMut::from(&b"garbage!"[..]);
        assert!(d.parse(&mut buf).is_err());
    }
}
