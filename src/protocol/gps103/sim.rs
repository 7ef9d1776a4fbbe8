//! A Coban TK103 device: `##,imei:<IMEI>,A;` login (answered `LOAD`), one `tracker` report
//! per fix, then its heartbeat `<IMEI>;` (answered `ON`), over TCP or UDP.
//!
//! Reports get no answer in this protocol, so a batch ends with a heartbeat: the gateway
//! answers a frame only after its events and everything before them on the connection were
//! delivered, so `ON` confirms the batch (real devices send a heartbeat every minute or so).
//! The device's clock is set to UTC+2: reports carry both clocks, as real ones do.
//!
//! Server messages: `LOAD`, `ON`, the alarm cancel `**,imei:<IMEI>,E;`, and commands
//! `**,imei:<IMEI>,<code>`. Commands have no terminator; one ends at the end of what was
//! read, or where the next server message starts. The device answers `B` with a report of
//! its last position and executes the others silently.

use bytes::{Buf, BytesMut};

use crate::protocol::civil::civil_from_secs;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};

use super::{LOAD, ON};

/// The device clock's offset from UTC, minutes.
const ZONE_MINUTES: i64 = 120;
/// Longest server message kept while waiting for its end.
const MAX_MESSAGE: usize = 1024;

pub struct Coban {
    imei: String,
    /// The last fix reported (the answer to `B`).
    last: Option<Fix>,
}

impl Coban {
    pub fn new(imei: &str, _udp: bool) -> Self {
        Coban {
            imei: imei.to_string(),
            last: None,
        }
    }

    /// `ddmm.mmmm` (`deg_digits` = 2) or `dddmm.mmmm` (3), rounded once so minutes never read
    /// 60.
    fn ddmm(v: f64, deg_digits: usize) -> String {
        let total = (v.abs() * 600_000.0).round() as u64;
        let (deg, rest) = (total / 600_000, total % 600_000);
        format!(
            "{deg:0deg_digits$}{:02}.{:04}",
            rest / 10_000,
            rest % 10_000
        )
    }

    /// One report of `f` with `keyword`.
    pub fn report(&self, f: &Fix, keyword: &str) -> Vec<u8> {
        let secs = (f.time_ms / 1000) as i64;
        let (y, mo, d, h, mi, s) = civil_from_secs(secs + ZONE_MINUTES * 60);
        let (_, _, _, uh, um, us) = civil_from_secs(secs);
        format!(
            "imei:{},{keyword},{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02},,F,{uh:02}{um:02}{us:02}.{:03},A,{},{},{},{},{:.2},{:.2},{:.1},1,0,,,;",
            self.imei,
            y.rem_euclid(100),
            f.time_ms % 1000,
            Self::ddmm(f.latitude, 2),
            if f.latitude < 0.0 { 'S' } else { 'N' },
            Self::ddmm(f.longitude, 3),
            if f.longitude < 0.0 { 'W' } else { 'E' },
            f.speed_kmh / 1.852,
            f.course.rem_euclid(360.0),
            f.altitude,
        )
        .into_bytes()
    }

    fn heartbeat(&self) -> Vec<u8> {
        format!("{};", self.imei).into_bytes()
    }
}

/// Where the next server message starts after position `from` (`LOAD`, `ON`, `**`).
fn next_message(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&i| {
        let rest = buf.get(i..).unwrap_or_default();
        rest.starts_with(LOAD) || rest.starts_with(ON) || rest.starts_with(b"**")
    })
}

impl DeviceCodec for Coban {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            format!("##,imei:{},A;", self.imei).into_bytes(),
            LOAD.to_vec(),
        ))
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let mut units: Vec<Vec<u8>> = fixes.iter().map(|f| self.report(f, "tracker")).collect();
        units.push(self.heartbeat());
        if let Some(f) = fixes.last() {
            self.last = Some(*f);
        }
        Batch {
            frames: units.len() as u32,
            units,
            expected: vec![ON.to_vec()],
            records: fixes.len() as u32,
        }
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        if buf.is_empty() {
            return Ok(None);
        }
        for token in [LOAD, ON] {
            if buf.starts_with(token) {
                buf.advance(token.len());
                return Ok(Some(Incoming::Reply(token.to_vec())));
            }
            if token.starts_with(buf) {
                return Ok(None);
            }
        }
        const COMMAND: &[u8] = b"**,imei:";
        if !buf.starts_with(COMMAND) {
            if COMMAND.starts_with(buf) {
                return Ok(None);
            }
            return Err(DeviceError(format!(
                "not a GPS103 server message: {:?}",
                String::from_utf8_lossy(buf.get(..buf.len().min(40)).unwrap_or_default())
            )));
        }
        let semicolon = buf.iter().position(|&b| b == b';');
        let next = next_message(buf, 2);
        let (end, consumed) = match (semicolon, next) {
            (Some(s), n) if n.is_none_or(|n| s < n) => (s, s + 1),
            (_, Some(n)) => (n, n),
            (_, None) if buf.len() > MAX_MESSAGE => {
                return Err(DeviceError("a server message without end".into()));
            }
            (_, None) => (buf.len(), buf.len()),
        };
        let message = buf.split_to(consumed);
        let body = message.get(COMMAND.len()..end).unwrap_or_default();
        let id_len = body.iter().take_while(|b| b.is_ascii_digit()).count();
        if body.get(..id_len) != Some(self.imei.as_bytes()) || body.get(id_len) != Some(&b',') {
            return Ok(Some(Incoming::Ignored("a command for another device")));
        }
        let code = String::from_utf8_lossy(body.get(id_len + 1..).unwrap_or_default()).into_owned();
        if code == "E" && semicolon.is_some_and(|s| s == end) {
            // The server's cancel of an SOS alarm: its answer to a `help me` report.
            return Ok(Some(Incoming::Reply(message.to_vec())));
        }
        let answer = match (code.as_str(), self.last) {
            ("B", Some(f)) => self.report(&f, "tracker"),
            _ => Vec::new(),
        };
        Ok(Some(Incoming::Command { text: code, answer }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, Transport};
    use crate::protocol::gps103::Gps103;
    use crate::protocol::{ProtocolConfig, ProtocolModule};
    use crate::simulate::track::Track;

    fn fixes(n: u64) -> Vec<Fix> {
        let t = Track::new(9, 1_700_000_000_000);
        (0..n).map(|i| t.at(1_700_000_000_000 + i * 1000)).collect()
    }

    #[test]
    fn coordinates_are_written_exactly() {
        assert_eq!(Coban::ddmm(54.687_2, 2), "5441.2320");
        assert_eq!(Coban::ddmm(25.279_8, 3), "02516.7880");
        assert_eq!(Coban::ddmm(-0.999_999_99, 2), "0100.0000");
    }

    #[test]
    fn what_the_device_sends_decodes_in_the_gateway_with_the_expected_answers() {
        for udp in [false, true] {
            let t = if udp { Transport::Udp } else { Transport::Tcp };
            let mut s = Gps103.new_session(t, &ProtocolConfig::default());
            let mut d = Coban::new("350000000000001", udp);
            let (login, ack) = d.login().unwrap();
            let f = s
                .decode(
                    &mut BytesMut::from(&login[..]),
                    std::time::SystemTime::now(),
                )
                .unwrap()
                .unwrap();
            assert_eq!(f.reply.as_deref(), Some(&ack[..]));
            assert_eq!(f.login.as_deref(), Some("350000000000001"));
            let fx = fixes(3);
            let b = d.batch(&fx);
            assert_eq!((b.frames, b.records, b.units.len()), (4, 3, 4));
            for (i, unit) in b.units.iter().enumerate() {
                let f = s
                    .decode(&mut BytesMut::from(&unit[..]), std::time::SystemTime::now())
                    .unwrap()
                    .unwrap();
                assert!(f.lenient.is_empty());
                if i < 3 {
                    assert_eq!(f.reply, None);
                    let e = &f.events[0];
                    assert_eq!(e.kind, EventKind::Position as i32);
                    let p = e.position.as_ref().unwrap();
                    assert!((p.latitude - fx[i].latitude).abs() < 1e-5, "{p:?}");
                    assert!((p.longitude - fx[i].longitude).abs() < 1e-5, "{p:?}");
                    assert!((p.speed.unwrap() - fx[i].speed_kmh).abs() < 0.02, "{p:?}");
                    // Both clocks: the event time is the fix's, to the millisecond.
                    let t = e.device_time.unwrap();
                    let ms = t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000;
                    assert_eq!(ms, fx[i].time_ms);
                    assert_eq!(e.telemetry().ignition, Some(true));
                } else {
                    assert_eq!(f.reply.as_deref(), Some(&b.expected[0][..]));
                    assert_eq!(f.events[0].kind, EventKind::Heartbeat as i32);
                }
            }
        }
    }

    #[test]
    fn server_messages() {
        let mut d = Coban::new("350000000000001", false);
        let mut buf = BytesMut::from(&b"LOADO"[..]);
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Reply(LOAD.to_vec()))
        );
        assert_eq!(d.parse(&mut buf).unwrap(), None, "half an ON");
        buf.extend_from_slice(
            b"N**,imei:350000000000001,C,05mON**,imei:350000000000001,E;**,imei:350000000000001,B",
        );
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Reply(ON.to_vec()))
        );
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Command {
                text: "C,05m".into(),
                answer: Vec::new()
            })
        );
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Reply(ON.to_vec()))
        );
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Reply(b"**,imei:350000000000001,E;".to_vec()))
        );
        // `B` before any fix: nothing to report yet.
        assert_eq!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Command {
                text: "B".into(),
                answer: Vec::new()
            })
        );
        assert!(buf.is_empty());
        d.batch(&fixes(1));
        let mut buf = BytesMut::from(&b"**,imei:350000000000001,B"[..]);
        let Some(Incoming::Command { text, answer }) = d.parse(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(text, "B");
        assert!(answer.starts_with(b"imei:350000000000001,tracker,"));
        let mut buf = BytesMut::from(&b"**,imei:9,J"[..]);
        assert!(matches!(
            d.parse(&mut buf).unwrap(),
            Some(Incoming::Ignored(_))
        ));
        let mut buf = BytesMut::from(&b"HTTP/1.1 400\r\n"[..]);
        assert!(d.parse(&mut buf).is_err());
    }
}
