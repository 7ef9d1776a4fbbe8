//! A Wialon IPS device, 1.1 or 2.0: `#L#` login, `#D#` (one record, `#AD#1`) or `#B#`
//! blackbox packets (K records, `#AB#K`), the UDP form with the IMEI prefix, and `#M#`
//! messages from the server.
//!
//! The spec lists `#AM#` as a server-only packet ("reply to message from driver"): a tracker
//! does not answer a server's `#M#` with `#AM#`. What the driver's terminal does is answer with
//! a message of its own, `#M#` from the tracker, which the server acknowledges with `#AM#1`.
//! That is what this device does; a 2.0 message whose CRC is wrong is dropped unanswered.

use bytes::{Buf, BytesMut};

use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};
use crate::protocol::wialon::crc;
use crate::protocol::wialon::packet::{self, ParamValue, Record};

/// Longest line accepted from the server.
const MAX_LINE: usize = 8 * 1024;

pub struct Wialon {
    imei: String,
    v2: bool,
    udp: bool,
    /// Driver messages sent and not yet answered with `#AM#`.
    awaiting_am: u32,
}

impl Wialon {
    pub fn new(imei: &str, v2: bool, udp: bool) -> Self {
        Wialon {
            imei: imei.to_string(),
            v2,
            udp,
            awaiting_am: 0,
        }
    }

    fn record(f: &Fix) -> Record {
        Record {
            time: Some((f.time_ms / 1000) as i64),
            latitude: Some(f.latitude),
            longitude: Some(f.longitude),
            speed: Some(f.speed_kmh.round()),
            course: Some(f.course.round() % 360.0),
            height: Some(f.altitude.round()),
            satellites: Some(f.satellites.into()),
            hdop: Some((f.hdop * 10.0).round() / 10.0),
            inputs: Some(1),
            outputs: Some(0),
            adc: vec![Some(f64::from(f.power_mv) / 1000.0)],
            ibutton: None,
            params: vec![
                ("ign".into(), ParamValue::Int(1)),
                ("gsm_level".into(), ParamValue::Int(f.gsm_level.into())),
                ("odometer".into(), ParamValue::Int(f.odometer_m as i64)),
                (
                    "pwr_ext".into(),
                    ParamValue::Double(f64::from(f.power_mv) / 1000.0),
                ),
                ("fw".into(), ParamValue::Text(b"avlgate-sim".to_vec())),
            ],
        }
    }

    /// `#TYPE#body\r\n`, with the UDP prefix when over UDP.
    fn packet(&self, ty: &str, body: &str) -> Vec<u8> {
        let prefix = match (self.udp, self.v2) {
            (false, _) => String::new(),
            (true, false) => self.imei.clone(),
            (true, true) => format!("2.0;{}", self.imei),
        };
        format!("{prefix}#{ty}#{body}\r\n").into_bytes()
    }

    /// The text of a server's `#M#body`; `None` when a 2.0 message's CRC is missing or wrong.
    fn message_text(&self, body: &[u8]) -> Option<String> {
        let text = if self.v2 {
            let i = body.iter().rposition(|&b| b == b';')?;
            let covered = body.get(..=i).unwrap_or_default();
            let field = body.get(i + 1..).unwrap_or_default();
            if crc::check(covered, field) != Some(true) {
                return None;
            }
            body.get(..i).unwrap_or_default()
        } else {
            body
        };
        Some(String::from_utf8_lossy(text).into_owned())
    }

    /// The driver's answer: a `#M#` of the device's own (one line, no separators).
    fn answer(&mut self, text: &str) -> Vec<u8> {
        let clean: String = text
            .chars()
            .map(|c| {
                if matches!(c, '\r' | '\n' | ';' | '#') {
                    ' '
                } else {
                    c
                }
            })
            .take(200)
            .collect();
        let msg = format!("Received: {clean}");
        let body = if self.v2 { packet::with_crc(&msg) } else { msg };
        self.awaiting_am += 1;
        self.packet("M", &body)
    }
}

impl DeviceCodec for Wialon {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.udp {
            return None;
        }
        let body = if self.v2 {
            packet::with_crc(&format!("2.0;{};NA", self.imei))
        } else {
            format!("{};NA", self.imei)
        };
        Some((self.packet("L", &body), packet::reply("AL", "1").to_vec()))
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let bodies: Vec<String> = fixes
            .iter()
            .map(|f| packet::render_record(&Self::record(f), true))
            .collect();
        let n = bodies.len();
        let (unit, ack) = if n == 1 {
            let body = if self.v2 {
                packet::with_crc(&bodies[0])
            } else {
                bodies[0].clone()
            };
            (self.packet("D", &body), packet::reply("AD", "1"))
        } else {
            let mut body = bodies.join("|");
            if self.v2 {
                // The CRC covers everything up to and including the last `|`.
                body.push('|');
                let c = crc::render(body.as_bytes());
                body.push_str(&c);
            }
            (self.packet("B", &body), packet::reply("AB", &n.to_string()))
        };
        Batch {
            units: vec![unit],
            expected: vec![ack.to_vec()],
            frames: 1,
            records: n as u32,
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        let blank = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        buf.advance(blank);
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_LINE {
                return Err(DeviceError(format!("a line longer than {MAX_LINE} bytes")));
            }
            return Ok(None);
        };
        let line = buf.split_to(nl + 1);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if let Some(body) = text.strip_prefix(b"#M#") {
            return Ok(Some(match self.message_text(body) {
                Some(text) => {
                    let answer = self.answer(&text);
                    Incoming::Command { text, answer }
                }
                None => Incoming::Ignored("server message with a bad CRC"),
            }));
        }
        // Batches never wait for `#AM#`: one here answers a driver message.
        if self.awaiting_am > 0 && text.starts_with(b"#AM#") {
            self.awaiting_am -= 1;
            return Ok(Some(Incoming::AnswerAck {
                ok: text == b"#AM#1",
            }));
        }
        if !text.starts_with(b"#A") {
            return Err(DeviceError(format!(
                "not a Wialon reply: {:?}",
                String::from_utf8_lossy(&text[..text.len().min(40)])
            )));
        }
        Ok(Some(Incoming::Reply(line.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::ProtocolConfig;
    use crate::simulate::track::Track;

    fn fixes(n: u64) -> Vec<Fix> {
        let t = Track::new(9, 1_700_000_000_000);
        (0..n).map(|i| t.at(1_700_000_000_000 + i * 1000)).collect()
    }

    #[test]
    fn packets_decode_in_the_gateway_with_the_expected_answers() {
        for v2 in [false, true] {
            for udp in [false, true] {
                let transport = if udp { Transport::Udp } else { Transport::Tcp };
                let mut s = crate::protocol::wialon::MODULE
                    .new_session(transport, &ProtocolConfig::default());
                let mut d = Wialon::new("350000000000001", v2, udp);
                let mut sent = Vec::new();
                if let Some((login, ack)) = d.login() {
                    sent.push((login, ack, 0));
                }
                for k in [1u64, 2, 10, 100] {
                    let b = d.batch(&fixes(k));
                    sent.push((b.units[0].clone(), b.expected[0].clone(), k as usize));
                }
                for (bytes, ack, k) in sent {
                    let mut buf = BytesMut::from(&bytes[..]);
                    let f = s
                        .decode(&mut buf, std::time::SystemTime::now())
                        .unwrap_or_else(|e| {
                            panic!(
                                "v2 {v2} udp {udp}: {e:?} for {}",
                                String::from_utf8_lossy(&bytes)
                            )
                        })
                        .unwrap();
                    assert_eq!(f.reply.as_deref(), Some(&ack[..]), "v2 {v2} udp {udp}");
                    assert_eq!(f.events.len(), k);
                    for e in &f.events {
                        assert_eq!(e.kind, EventKind::Position as i32);
                        let p = e.position.as_ref().unwrap();
                        assert!((p.latitude - 54.6872).abs() < 1.0, "{p:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn server_messages_are_answered_with_a_driver_message() {
        let mut d = Wialon::new("350000000000001", true, false);
        let good = format!("#M#{}\r\n", packet::with_crc("hello driver"));
        let mut buf =
            BytesMut::from(format!("#AL#1\r\n{good}#M#bad;0\r\n#AM#1\r\n#AD#1\r\n").as_bytes());
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Reply(b"#AL#1\r\n".to_vec()))
        );
        let Some(Incoming::Command { text, answer }) = d.parse(&mut buf).unwrap() else {
            panic!("not a command");
        };
        assert_eq!(text, "hello driver");
        // The answer is a driver message the gateway accepts and acknowledges.
        let mut s =
            crate::protocol::wialon::MODULE.new_session(Transport::Tcp, &ProtocolConfig::default());
        let (login, _) = d.login().unwrap();
        s.decode(
            &mut BytesMut::from(&login[..]),
            std::time::SystemTime::now(),
        )
        .unwrap();
        let f = s
            .decode(
                &mut BytesMut::from(&answer[..]),
                std::time::SystemTime::now(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(f.events[0].kind, EventKind::DriverMessage as i32);
        assert_eq!(f.reply.as_deref(), Some(&b"#AM#1\r\n"[..]));
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Ignored("server message with a bad CRC"))
        );
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::AnswerAck { ok: true })
        );
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Reply(b"#AD#1\r\n".to_vec()))
        );
        assert_eq!(d.parse(&mut buf).unwrap(), None);
        let mut junk = BytesMut::from(&b"HTTP/1.1 400\r\n"[..]);
        assert!(d.parse(&mut junk).is_err());
        let mut udp = Wialon::new("350000000000001", false, true);
        let mut buf = BytesMut::from(&b"#M#hi\r\n"[..]);
        assert_eq!(
            udp.parse(&mut buf).unwrap(),
            Some(Incoming::Command {
                text: "hi".into(),
                answer: b"350000000000001#M#Received: hi\r\n".to_vec()
            })
        );
    }
}
