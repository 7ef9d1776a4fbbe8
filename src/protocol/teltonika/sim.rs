//! A Teltonika FMB-class device: IMEI login (`01` accepts), Codec 8 / 8E / 16 AVL frames with
//! the usual IO set, the record-count ACK (TCP) or the packet-id ACK (UDP), and Codec 12/14
//! commands answered with a Codec 12/14 response.

use bytes::{Buf, BytesMut};

use crate::protocol::civil::civil_from_secs as civil;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};
use crate::protocol::teltonika::avl::{self, Codec, IoValue, Record};
use crate::protocol::teltonika::{command, frame};

/// Largest command frame accepted from the server.
const MAX_COMMAND_FRAME: usize = 16 * 1024;

pub struct Teltonika {
    imei: String,
    codec: Codec,
    udp: bool,
    awaiting_login: bool,
    packet_id: u16,
    avl_packet_id: u8,
    last: Option<Fix>,
}

impl Teltonika {
    pub fn new(imei: &str, codec: Codec, udp: bool) -> Self {
        Teltonika {
            imei: imei.to_string(),
            codec,
            udp,
            awaiting_login: false,
            packet_id: 0,
            avl_packet_id: 0,
            last: None,
        }
    }

    /// An AVL record with the IO elements every FMB device reports.
    fn record(&self, f: &Fix) -> Record {
        let hdop10 = (f.hdop * 10.0).round() as u16;
        let mut io = vec![
            (239, IoValue::U8(1)),                           // ignition
            (240, IoValue::U8(u8::from(f.speed_kmh > 2.0))), // movement
            (21, IoValue::U8(f.gsm_level)),                  // GSM signal
            (69, IoValue::U8(1)),                            // GNSS status: on with fix
            (66, IoValue::U16(f.power_mv)),                  // external voltage
            (67, IoValue::U16(f.battery_mv)),                // battery voltage
            (182, IoValue::U16(hdop10)),                     // GNSS HDOP ×10
            (181, IoValue::U16(hdop10 + 3)),                 // GNSS PDOP ×10
            (24, IoValue::U16(f.speed_kmh.round() as u16)),  // speed
            (16, IoValue::U32(f.odometer_m as u32)),         // total odometer
            (11, IoValue::U64(89_370_000_000_000_000)),      // ICCID (first part)
        ];
        if self.codec == Codec::C8E {
            // An NX element, as 8E devices send for BLE and similar variable-length values.
            io.push((385, IoValue::Bytes(vec![0x01, 0x02, 0x03, 0x04])));
        }
        Record {
            timestamp_ms: f.time_ms,
            priority: 0,
            longitude: (f.longitude * 1e7).round() as i32,
            latitude: (f.latitude * 1e7).round() as i32,
            altitude: f.altitude.round() as i16,
            angle: (f.course.round() as u16) % 360,
            satellites: f.satellites,
            speed: f.speed_kmh.round() as u16,
            event_io: 0,
            // Codec 16: 7 = periodical.
            generation_type: (self.codec == Codec::C16).then_some(7),
            io,
        }
    }

    /// A plausible answer to the usual SMS/GPRS commands.
    fn answer_text(&self, cmd: &str) -> String {
        let f = self.last;
        let cmd = cmd.trim();
        let word = cmd.split_whitespace().next().unwrap_or_default();
        match word {
            "getinfo" => "INI:2024/1/1 0:00 RTC:2024/1/1 0:00 RST:2 ERR:0 SR:0 BR:0 CF:0 FG:0 FL:0 TU:0/0 UT:0 SMS:0 NOGPS:0:0 GPS:3 SAT:10 RS:3 RF:0 SF:0 MD:0".into(),
            "getver" => format!(
                "Ver:03.28.07_04 GPS:AXN_5.10_3333 Hw:FMB920 Mod:13 IMEI:{} Init:2024-1-1 0:00 Uptime:3600 MAC:000000000000 SPC:1(0) AXL:0 OBD:0 BL:1.10 BT:4",
                self.imei
            ),
            "getgps" => match f {
                Some(f) => {
                    let (y, mo, d, h, mi, s) = civil((f.time_ms / 1000) as i64);
                    format!(
                        "GPS:1 Sat:{} Lat:{:.6} Long:{:.6} Alt:{:.0} Speed:{:.0} Dir:{:.0} Date: {y}/{mo}/{d} Time: {h}:{mi:02}:{s:02}",
                        f.satellites, f.latitude, f.longitude, f.altitude, f.speed_kmh, f.course
                    )
                }
                None => "GPS:0 Sat:0".into(),
            },
            "getstatus" => "Data Link: 1 GPRS: 1 Phone: 0 SIM: 0 OP: 24602 Signal: 5 NewSMS: 0 Roaming: 0 SMSFull: 0 LAC: 1 Cell ID: 1 NetType: 1 FwUpd:-1".into(),
            "setdigout" => {
                let v = cmd.split_whitespace().nth(1).unwrap_or("0");
                let b = |i: usize| v.as_bytes().get(i).map_or('0', |&c| char::from(c));
                format!("DOUT1:{} DOUT2:{} DOUT3:{}", b(0), b(1), b(2))
            }
            "" => "Empty command".into(),
            _ => format!("{cmd}: OK"),
        }
    }

    fn parse_tcp(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        if self.awaiting_login {
            let Some(&b) = buf.first() else {
                return Ok(None);
            };
            buf.advance(1);
            self.awaiting_login = false;
            return Ok(Some(Incoming::Reply(vec![b])));
        }
        let Some(head) = buf.get(..4) else {
            return Ok(None);
        };
        if head != [0, 0, 0, 0] {
            // A record-count ACK.
            let r = buf.split_to(4).to_vec();
            return Ok(Some(Incoming::Reply(r)));
        }
        // Four zero bytes: an ACK of 0 records, or the preamble of a command frame (a codec id
        // 0x0C..0x0E after the length). An ACK of 0 followed by nothing waits for more bytes
        // and ends as an ACK timeout: a 0 ACK is a refusal either way.
        let Some(&codec) = buf.get(8) else {
            return Ok(None);
        };
        let len = buf
            .get(4..8)
            .map_or(0, |l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
        if !(0x0C..=0x0E).contains(&codec) || len < 8 {
            buf.advance(4);
            return Ok(Some(Incoming::Reply(vec![0, 0, 0, 0])));
        }
        let f = match frame::split_tcp(buf, MAX_COMMAND_FRAME) {
            Ok(frame::Split::Incomplete) => return Ok(None),
            Ok(frame::Split::Complete(f, total)) => {
                let out = if f.crc_ok {
                    Ok(f.data.to_vec())
                } else {
                    Err(total)
                };
                buf.advance(total);
                out
            }
            Err(e) => return Err(DeviceError(e.to_string())),
        };
        let Ok(data) = f else {
            // A device drops a command with a bad CRC; the server resends it.
            return Ok(Some(Incoming::Ignored("command CRC mismatch")));
        };
        Ok(Some(self.command(&data)))
    }

    /// A Codec 12 (type 05) or Codec 14 command, and its answer.
    fn command(&self, data: &[u8]) -> Incoming {
        if data.first() == Some(&0x0E) {
            // 0E 01 05 <size> <imei 8 BCD> <text> 01: answer 06 with the text, or 11 when the
            // IMEI is not ours.
            let imei = data.get(7..15).unwrap_or_default();
            let text = data
                .get(15..data.len().saturating_sub(1))
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .unwrap_or_default();
            let ours = command::encode_codec14(0x06, &self.imei, b"")
                .and_then(|d| d.get(7..15).map(<[u8]>::to_vec));
            let answer = if ours.as_deref() == Some(imei) {
                command::encode_codec14(0x06, &self.imei, self.answer_text(&text).as_bytes())
            } else {
                command::encode_codec14(0x11, &self.imei, b"")
            };
            return match answer {
                Some(a) => Incoming::Command {
                    text,
                    answer: frame::encode_tcp(&a),
                },
                None => Incoming::Ignored("Codec 14 answer"),
            };
        }
        match command::parse(data) {
            Ok(command::Message::Command { text }) => {
                let text = String::from_utf8_lossy(&text).into_owned();
                let answer = command::encode_codec12(0x06, self.answer_text(&text).as_bytes());
                Incoming::Command {
                    text,
                    answer: frame::encode_tcp(&answer),
                }
            }
            _ => Incoming::Ignored("not a Codec 12/14 command"),
        }
    }
}

impl DeviceCodec for Teltonika {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.udp {
            return None;
        }
        self.awaiting_login = true;
        Some((frame::encode_login(&self.imei), vec![0x01]))
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let records: Vec<Record> = fixes.iter().take(255).map(|f| self.record(f)).collect();
        self.last = fixes.last().copied();
        let n = records.len();
        let data = avl::encode(self.codec, &records);
        let (unit, ack) = if self.udp {
            self.packet_id = self.packet_id.wrapping_add(1);
            self.avl_packet_id = self.avl_packet_id.wrapping_add(1);
            (
                frame::encode_udp(self.packet_id, self.avl_packet_id, &self.imei, &data),
                frame::udp_ack(self.packet_id, self.avl_packet_id, n as u8).to_vec(),
            )
        } else {
            (frame::encode_tcp(&data), frame::tcp_ack(n as u32).to_vec())
        };
        Batch {
            units: vec![unit],
            expected: vec![ack],
            frames: 1,
            records: n as u32,
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        if !self.udp {
            return self.parse_tcp(buf);
        }
        // UDP ACK: `00 05 <packet id> 01 <AVL packet id> <count>`, length-prefixed.
        let Some(l) = buf.get(..2) else {
            return Ok(None);
        };
        let total = 2 + usize::from(u16::from_be_bytes([l[0], l[1]]));
        if total > MAX_COMMAND_FRAME {
            return Err(DeviceError(format!("UDP message announces {total} bytes")));
        }
        if buf.len() < total {
            return Ok(None);
        }
        let d = buf.split_to(total);
        if total == 7 {
            return Ok(Some(Incoming::Reply(d.to_vec())));
        }
        // A command in the UDP channel header (the server's side of the channel): the device
        // answers with a datagram of the same form, echoing the packet ids.
        let Ok(u) = frame::parse_udp(&d) else {
            return Err(DeviceError(format!("not a UDP ACK or command: {d:02x?}")));
        };
        Ok(Some(match self.command(u.data) {
            Incoming::Command { text, answer } => {
                let data = frame::split_tcp(&answer, MAX_COMMAND_FRAME)
                    .ok()
                    .and_then(|s| match s {
                        frame::Split::Complete(f, _) => Some(f.data.to_vec()),
                        frame::Split::Incomplete => None,
                    })
                    .unwrap_or_default();
                Incoming::Command {
                    text,
                    answer: frame::encode_udp(u.packet_id, u.avl_packet_id, &self.imei, &data),
                }
            }
            other => other,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::ProtocolConfig;
    use crate::simulate::track::Track;

    fn fixes(n: u64) -> Vec<Fix> {
        let t = Track::new(3, 1_700_000_000_000);
        (0..n).map(|i| t.at(1_700_000_000_000 + i * 1000)).collect()
    }

    /// Runs bytes through the gateway's own decoder: the events and the reply it produces.
    fn gateway(transport: Transport, bytes: &[&[u8]]) -> Vec<(usize, Option<Vec<u8>>)> {
        let mut s =
            crate::protocol::teltonika::MODULE.new_session(transport, &ProtocolConfig::default());
        let mut out = Vec::new();
        for b in bytes {
            let mut buf = BytesMut::from(*b);
            while let Some(f) = s.decode(&mut buf, std::time::SystemTime::now()).unwrap() {
                assert!(f
                    .events
                    .iter()
                    .all(|e| e.kind == EventKind::Position as i32));
                out.push((f.events.len(), f.reply.map(|r| r.to_vec())));
            }
        }
        out
    }

    #[test]
    fn every_codec_decodes_in_the_gateway_and_gets_the_expected_ack() {
        for codec in [Codec::C8, Codec::C8E, Codec::C16] {
            for k in [1, 10, 100] {
                let mut d = Teltonika::new("350000000000001", codec, false);
                let (login, login_ack) = d.login().unwrap();
                let b = d.batch(&fixes(k));
                assert_eq!((b.frames, b.records), (1, k as u32));
                let got = gateway(Transport::Tcp, &[&login, &b.units[0]]);
                assert_eq!(
                    got,
                    vec![
                        (0, Some(login_ack)),
                        (k as usize, Some(b.expected[0].clone()))
                    ],
                    "{codec:?} × {k}"
                );
            }
            let mut d = Teltonika::new("350000000000001", codec, true);
            assert_eq!(d.login(), None);
            let b1 = d.batch(&fixes(5));
            let b2 = d.batch(&fixes(5));
            assert_ne!(b1.units, b2.units, "each datagram has its own packet id");
            let got = gateway(Transport::Udp, &[&b1.units[0], &b2.units[0]]);
            assert_eq!(
                got,
                vec![
                    (5, Some(b1.expected[0].clone())),
                    (5, Some(b2.expected[0].clone()))
                ]
            );
        }
    }

    #[test]
    fn records_carry_the_track() {
        let f = fixes(1)[0];
        let d = Teltonika::new("350000000000001", Codec::C8E, false);
        let data = avl::encode(Codec::C8E, &[d.record(&f)]);
        let (_, recs) = avl::parse(&data).unwrap();
        let profile = &crate::protocol::teltonika::mapping::profiles()[0];
        let e = crate::protocol::teltonika::mapping::to_event(&recs[0], profile);
        let p = e.position.unwrap();
        assert!((p.latitude - f.latitude).abs() < 1e-6);
        assert!((p.longitude - f.longitude).abs() < 1e-6);
        assert_eq!(p.speed, Some(f.speed_kmh.round()));
        assert_eq!(p.satellites, Some(u32::from(f.satellites)));
    }

    #[test]
    fn replies_and_commands_split_from_the_stream() {
        let mut d = Teltonika::new("352093081429150", Codec::C8, false);
        d.login();
        let cmd = frame::encode_tcp(&command::encode_codec12(0x05, b"getver"));
        let c14 = frame::encode_tcp(
            &command::encode_codec14(0x05, "352093081429150", b"getinfo").unwrap(),
        );
        let other = frame::encode_tcp(
            &command::encode_codec14(0x05, "352093081429151", b"getinfo").unwrap(),
        );
        let mut stream = BytesMut::new();
        stream.extend_from_slice(&[0x01, 0, 0, 0, 10]);
        stream.extend_from_slice(&cmd);
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(&c14);
        stream.extend_from_slice(&other);
        let mut got = Vec::new();
        // Fed byte by byte, as a slow link would deliver it.
        let mut buf = BytesMut::new();
        for b in stream {
            buf.extend_from_slice(&[b]);
            while let Some(m) = d.parse(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got[0], Incoming::Reply(vec![1]));
        assert_eq!(got[1], Incoming::Reply(vec![0, 0, 0, 10]));
        let Incoming::Command { text, answer } = &got[2] else {
            panic!("{:?}", got[2]);
        };
        assert_eq!(text, "getver");
        // The answer is a Codec 12 response the gateway decodes.
        let mut s = crate::protocol::teltonika::MODULE
            .new_session(Transport::Tcp, &ProtocolConfig::default());
        let mut b = BytesMut::from(&frame::encode_login("352093081429150")[..]);
        s.decode(&mut b, std::time::SystemTime::now()).unwrap();
        let mut b = BytesMut::from(&answer[..]);
        let f = s
            .decode(&mut b, std::time::SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(f.events[0].kind, EventKind::CommandResponse as i32);
        assert_eq!(got[3], Incoming::Reply(vec![0, 0, 0, 1]));
        let Incoming::Command { answer, .. } = &got[4] else {
            panic!();
        };
        assert_eq!(answer[10], 0x06, "Codec 14 to our IMEI: ACK");
        let Incoming::Command { answer, .. } = &got[5] else {
            panic!();
        };
        assert_eq!(answer[10], 0x11, "Codec 14 to another IMEI: nACK");
        assert_eq!(got.len(), 6);
    }
}
