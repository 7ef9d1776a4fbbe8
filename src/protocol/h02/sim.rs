//! H02 devices, sans IO:
//!
//! - `h02`: one `*HQ,<imei>,V1,…#` text position per fix, each confirmed by the server's
//!   `*HQ,<imei>,V4,V1,<yyyyMMddHHmmss>#`;
//! - `h02bin`: one 42-byte binary `$` frame per fix (the IMEI as its 8-byte id), then a
//!   `*HQ,<imei>,HTBT#` heartbeat. Binary frames are not answered (unless the gateway's `ack`
//!   setting is on), so the heartbeat's echo, which the gateway sends only after everything
//!   before it was delivered, is what confirms the batch.
//!
//! The `V4,V1` confirmation carries the server's clock, which a device cannot predict: the
//! codec checks that it is a valid date-time within an hour of the batch's last fix and then
//! compares the rest byte for byte (the time replaced by [`SERVER_TIME`] on both sides).
//!
//! Commands (`*HQ,<imei>,<cmd>,<HHmmss>[,…]#`) are answered with the `V4` confirmation the
//! documents give: `*HQ,<imei>,V4,<cmd>,[DONE,]<HHmmss>,<its time>,A,<fix>,…#`.

use bytes::{Buf, BytesMut};

use crate::protocol::civil::civil_from_secs as civil;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};

use super::text::KNOTS_TO_KMH;

/// Stands for the server's clock in replies the codec compares.
pub const SERVER_TIME: &str = "<server time>";
/// The status word of a healthy device with the ignition on: every active-low bit set.
const STATUS: u32 = 0xFFFF_FFFF;
/// Longest server message accepted.
const MAX_MESSAGE: usize = 1024;
/// How far the server's clock may be from the last fix, seconds.
const CLOCK_WINDOW: i64 = 3600;

pub struct H02 {
    imei: String,
    binary: bool,
    last: Option<Fix>,
}

impl H02 {
    /// The text device.
    pub fn text(imei: &str, _udp: bool) -> Self {
        H02 {
            imei: imei.to_string(),
            binary: false,
            last: None,
        }
    }

    /// The binary device.
    pub fn binary(imei: &str, _udp: bool) -> Self {
        H02 {
            binary: true,
            ..H02::text(imei, false)
        }
    }

    /// `ddmm.mmmm` / `dddmm.mmmm` as whole 10⁻⁴ minutes: (degrees, minutes × 10⁴).
    fn degrees_minutes(v: f64) -> (u64, u64) {
        let total = (v.abs() * 60.0 * 10_000.0).round() as u64;
        (total / 600_000, total % 600_000)
    }

    fn clock(f: &Fix) -> (String, String) {
        let (y, mo, d, h, mi, s) = civil((f.time_ms / 1000) as i64);
        (
            format!("{h:02}{mi:02}{s:02}"),
            format!("{d:02}{mo:02}{:02}", y.rem_euclid(100)),
        )
    }

    /// The `V1` layout from the time on: `hhmmss,A,lat,N,lon,E,speed,course,ddmmyy,status`.
    fn layout(f: &Fix) -> String {
        let (time, date) = Self::clock(f);
        let (ld, lm) = Self::degrees_minutes(f.latitude);
        let (od, om) = Self::degrees_minutes(f.longitude);
        format!(
            "{time},A,{ld:02}{:02}.{:04},{},{od:03}{:02}.{:04},{},{:.2},{},{date},{STATUS:08X}",
            lm / 10_000,
            lm % 10_000,
            if f.latitude >= 0.0 { 'N' } else { 'S' },
            om / 10_000,
            om % 10_000,
            if f.longitude >= 0.0 { 'E' } else { 'W' },
            f.speed_kmh / KNOTS_TO_KMH,
            f.course.round() as u32 % 360,
        )
    }

    fn v1(&self, f: &Fix) -> Vec<u8> {
        format!("*HQ,{},V1,{}#", self.imei, Self::layout(f)).into_bytes()
    }

    /// Digits as BCD bytes (an even count).
    fn bcd(digits: &str) -> Vec<u8> {
        digits
            .as_bytes()
            .chunks(2)
            .map(|p| {
                let d = |i: usize| p.get(i).map_or(0, |b| b.wrapping_sub(b'0') & 0x0F);
                d(0) << 4 | d(1)
            })
            .collect()
    }

    /// The 42-byte frame: `$`, IMEI + pad nibble, time, date, latitude, battery, longitude +
    /// flags, speed (knots) and course, status, a 10-byte tail.
    fn frame(&self, f: &Fix) -> Vec<u8> {
        let (time, date) = Self::clock(f);
        let (ld, lm) = Self::degrees_minutes(f.latitude);
        let (od, om) = Self::degrees_minutes(f.longitude);
        let mut flags = 0x02; // valid
        if f.latitude >= 0.0 {
            flags |= 0x04;
        }
        if f.longitude >= 0.0 {
            flags |= 0x08;
        }
        let knots = ((f.speed_kmh / KNOTS_TO_KMH).round() as u32).min(999);
        let course = f.course.round() as u32 % 360;
        let mut v = Vec::with_capacity(42);
        v.push(b'$');
        v.extend(Self::bcd(&format!(
            "{:0<16}",
            format!("{:0>15}", self.imei)
        )));
        v.extend(Self::bcd(&time));
        v.extend(Self::bcd(&date));
        v.extend(Self::bcd(&format!("{ld:02}{lm:06}")));
        v.push(100); // battery, %
        let mut lon = Self::bcd(&format!("{od:03}{om:06}0"));
        if let Some(last) = lon.last_mut() {
            *last |= flags;
        }
        v.extend(lon);
        v.extend(Self::bcd(&format!("{knots:03}{course:03}")));
        v.extend_from_slice(&STATUS.to_be_bytes());
        v.push(0xFF);
        v.extend_from_slice(&[0; 9]);
        v
    }

    fn heartbeat(&self) -> Vec<u8> {
        format!("*HQ,{},HTBT#", self.imei).into_bytes()
    }

    /// The server's `V4,<type>,<yyyyMMddHHmmss>` with its time checked and replaced.
    fn server_time(&self, stamp: &str) -> bool {
        let n = |a: usize, b: usize| stamp.get(a..b).and_then(|x| x.parse::<i64>().ok());
        let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) =
            (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14))
        else {
            return false;
        };
        if stamp.len() != 14
            || !(1..=12).contains(&mo)
            || !(1..=31).contains(&d)
            || h > 23
            || mi > 59
            || s > 59
        {
            return false;
        }
        let secs = crate::protocol::civil::days_from_civil(y, mo as u32, d as u32) * 86_400
            + h * 3600
            + mi * 60
            + s;
        self.last
            .is_none_or(|f| (secs - (f.time_ms / 1000) as i64).abs() <= CLOCK_WINDOW)
    }

    /// The confirmation of a command, from the last fix.
    fn confirm(&self, command: &str, time: &str) -> Vec<u8> {
        let result = if command == "S20" { "DONE," } else { "" };
        match self.last {
            Some(f) => format!(
                "*HQ,{},V4,{command},{result}{time},{}#",
                self.imei,
                Self::layout(&f)
            ),
            None => format!("*HQ,{},V4,{command},{result}{time}#", self.imei),
        }
        .into_bytes()
    }
}

impl DeviceCodec for H02 {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        None
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        if let Some(f) = fixes.last() {
            self.last = Some(*f);
        }
        if self.binary {
            let mut units: Vec<Vec<u8>> = fixes.iter().map(|f| self.frame(f)).collect();
            units.push(self.heartbeat());
            Batch {
                units,
                expected: vec![self.heartbeat()],
                frames: fixes.len() as u32 + 1,
                records: fixes.len() as u32,
            }
        } else {
            let canonical = format!("*HQ,{},V4,V1,{SERVER_TIME}#", self.imei).into_bytes();
            Batch {
                units: fixes.iter().map(|f| self.v1(f)).collect(),
                expected: vec![canonical; fixes.len()],
                frames: fixes.len() as u32,
                records: fixes.len() as u32,
            }
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        if buf.first().is_some_and(|&b| b != b'*') {
            return Err(DeviceError(format!("{:02x?}", &buf[..buf.len().min(16)])));
        }
        let Some(end) = buf.iter().position(|&b| b == b'#') else {
            if buf.len() > MAX_MESSAGE {
                return Err(DeviceError("a message without its `#`".into()));
            }
            return Ok(None);
        };
        let raw = buf.split_to(end + 1);
        // Line breaks after a message are not part of it.
        while buf.first().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            buf.advance(1);
        }
        let text = String::from_utf8_lossy(&raw[1..end]).into_owned();
        let fields: Vec<&str> = text.split(',').collect();
        let [maker, id, ty, rest @ ..] = &fields[..] else {
            return Err(DeviceError(format!("not an H02 message: {text}")));
        };
        if maker.len() != 2 || *id != self.imei {
            return Ok(Some(Incoming::Ignored("a message for another device")));
        }
        match (*ty, rest) {
            ("V4", [confirmed, stamp]) if self.server_time(stamp) => Ok(Some(Incoming::Reply(
                format!("*{maker},{id},V4,{confirmed},{SERVER_TIME}#").into_bytes(),
            ))),
            ("V4" | "R12" | "HTBT", _) => Ok(Some(Incoming::Reply(raw.to_vec()))),
            (command, [time, ..]) => Ok(Some(Incoming::Command {
                text: format!("*{text}#"),
                answer: self.confirm(command, time),
            })),
            _ => Ok(Some(Incoming::Ignored("a command without its time"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::{CommandRequest, ProtocolConfig, ProtocolModule};

    fn fix(i: u64) -> Fix {
        Fix {
            time_ms: 1_750_000_000_000 + i * 10_000,
            latitude: 54.682 + i as f64 * 1e-4,
            longitude: -25.391,
            altitude: 110.0,
            speed_kmh: 42.0,
            course: 359.6,
            satellites: 9,
            hdop: 0.8,
            odometer_m: 0,
            power_mv: 12_300,
            battery_mv: 4_100,
            gsm_level: 4,
        }
    }

    fn now() -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_100)
    }

    /// Each device's batch decodes in the gateway to its fixes, and the gateway's replies are
    /// exactly what the device expects.
    #[test]
    fn both_devices_decode_in_the_gateway_and_get_the_expected_replies() {
        for binary in [false, true] {
            for t in [Transport::Tcp, Transport::Udp] {
                let mut d = if binary {
                    H02::binary("356307042441013", t == Transport::Udp)
                } else {
                    H02::text("356307042441013", t == Transport::Udp)
                };
                let fixes: Vec<Fix> = (0..3).map(fix).collect();
                let batch = d.batch(&fixes);
                let mut s = super::super::H02.new_session(t, &ProtocolConfig::default());
                let mut replies = Vec::new();
                let mut positions = Vec::new();
                for unit in &batch.units {
                    let mut buf = BytesMut::from(&unit[..]);
                    while let Some(f) = s.decode(&mut buf, now()).unwrap() {
                        if let Some(r) = f.reply {
                            replies.push(r.to_vec());
                        }
                        positions.extend(
                            f.events
                                .into_iter()
                                .filter(|e| e.kind == EventKind::Position as i32),
                        );
                    }
                    assert!(buf.is_empty());
                }
                assert_eq!(positions.len(), 3, "binary {binary} {t:?}");
                for (e, f) in positions.iter().zip(&fixes) {
                    let p = e.position.as_ref().unwrap();
                    assert!((p.latitude - f.latitude).abs() < 2e-6, "{p:?}");
                    assert!((p.longitude - f.longitude).abs() < 2e-6, "{p:?}");
                    assert!((p.speed.unwrap() - 42.0).abs() < 1.0, "{p:?}");
                    assert_eq!(p.course, Some(0.0));
                    assert!(p.valid);
                    assert_eq!(e.device_time.unwrap().seconds, (f.time_ms / 1000) as i64);
                }
                let mut got = Vec::new();
                for r in replies {
                    let mut b = BytesMut::from(&r[..]);
                    match d.parse(&mut b).unwrap() {
                        Some(Incoming::Reply(x)) => got.push(x),
                        other => panic!("{other:?}"),
                    }
                }
                assert_eq!(got, batch.expected, "binary {binary} {t:?}");
            }
        }
    }

    #[test]
    fn a_server_time_far_from_the_fixes_is_not_the_expected_reply() {
        let mut d = H02::text("4210209006", false);
        let batch = d.batch(&[fix(0)]);
        let mut b = BytesMut::from(&b"*HQ,4210209006,V4,V1,20990101000000#"[..]);
        let Ok(Some(Incoming::Reply(r))) = d.parse(&mut b) else {
            panic!()
        };
        assert_ne!(r, batch.expected[0]);
        let mut b = BytesMut::from(&b"*HQ,4210209006,V4,V1,2025061514x640#"[..]);
        let Ok(Some(Incoming::Reply(r))) = d.parse(&mut b) else {
            panic!()
        };
        assert_ne!(r, batch.expected[0]);
    }

    #[test]
    fn commands_are_confirmed_with_their_name_and_time() {
        let mut d = H02::text("356307042441013", false);
        d.batch(&[fix(0)]);
        let mut s = super::super::H02.new_session(Transport::Tcp, &ProtocolConfig::default());
        let mut buf = BytesMut::from(&d.v1(&fix(0))[..]);
        s.decode(&mut buf, now()).unwrap().unwrap();
        let cmd = s.encode_command(&CommandRequest::EngineStop).unwrap();
        let tag = s.last_command_tag();
        let mut b = BytesMut::from(&cmd[..]);
        let Ok(Some(Incoming::Command { text, answer })) = d.parse(&mut b) else {
            panic!()
        };
        assert_eq!(text, String::from_utf8(cmd.to_vec()).unwrap());
        let mut buf = BytesMut::from(&answer[..]);
        let f = s.decode(&mut buf, now()).unwrap().unwrap();
        assert_eq!(f.answers.len(), 1);
        assert_eq!(f.answers[0].tag, tag);
        assert_eq!(f.events[0].text.as_deref(), Some("S20,DONE"));
        assert_eq!(f.events[1].kind, EventKind::Position as i32);
        // Garbage from the server is an error; a message for another id is ignored.
        let mut b = BytesMut::from(&b"\x00garbage"[..]);
        assert!(d.parse(&mut b).is_err());
        let mut b = BytesMut::from(&b"*HQ,1,S20,010203,1,1#"[..]);
        assert!(matches!(d.parse(&mut b), Ok(Some(Incoming::Ignored(_)))));
    }
}
