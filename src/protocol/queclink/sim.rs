//! Queclink devices for `avlgate simulate`:
//!
//! - [`Text`]: a GV300 in text mode. On connecting it sends an `+ACK:GTHBD` heartbeat (its
//!   "login": the gateway must answer `+SACK:GTHBD,<version>,<count>$`), then each batch as
//!   `+RESP:GTFRI` reports of up to 15 positions each, every one answered `+SACK:<count>$`.
//!   `AT+GT<cmd>` commands are answered `+ACK:GT<cmd>,…,<serial>,…`, and the gateway's SACK of
//!   that answer is taken as its acknowledgement.
//! - [`Pro`]: a Protocol Pro device: a `2B 10` heartbeat, then compact `2B 00` reports of up
//!   to 10 location records (data item `0x52`), each answered `+SACK:<count>$`.

use bytes::{Buf, BytesMut};

use crate::protocol::civil::civil_from_secs as civil;
use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Fix, Incoming};

use super::frame;

/// Longest message accepted from the server.
const MAX_LINE: usize = 4096;
/// GV300, protocol 1.00.
const VERSION: &str = "060100";
/// Positions per `GTFRI` (the protocol's maximum).
const MAX_POSITIONS: usize = 15;
/// Records per compact report.
const MAX_RECORDS: usize = 10;

fn time14(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil((ms / 1000) as i64);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// One `$`-terminated line from the server, or `None` until it is complete.
fn line(buf: &mut BytesMut) -> Result<Option<Vec<u8>>, DeviceError> {
    match buf.iter().position(|&b| b == b'$') {
        Some(i) => {
            let l = buf.split_to(i + 1).to_vec();
            Ok(Some(l))
        }
        None if buf.len() > MAX_LINE => Err(DeviceError(format!(
            "{} bytes from the server without a `$`",
            buf.len()
        ))),
        None => Ok(None),
    }
}

/// The shared server-side protocol: `+SACK:` replies (to reports or to command answers) and
/// `AT+` commands.
struct Link {
    imei: String,
    count: u16,
    /// Counts of command answers whose SACK is still due.
    answered: Vec<String>,
}

impl Link {
    fn next_count(&mut self) -> String {
        let c = format!("{:04X}", self.count);
        self.count = self.count.wrapping_add(1);
        c
    }

    fn parse(
        &mut self,
        buf: &mut BytesMut,
        answer: impl Fn(&mut Link, &str) -> Option<Vec<u8>>,
    ) -> Result<Option<Incoming>, DeviceError> {
        while buf.first().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            buf.advance(1);
        }
        let Some(l) = line(buf)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&l).into_owned();
        if let Some(count) = text
            .strip_prefix("+SACK:")
            .and_then(|r| r.strip_suffix('$'))
            .filter(|c| c.len() == 4)
        {
            if let Some(i) = self.answered.iter().position(|a| a == count) {
                self.answered.remove(i);
                return Ok(Some(Incoming::AnswerAck { ok: true }));
            }
        }
        if text.starts_with("+SACK:") {
            return Ok(Some(Incoming::Reply(l)));
        }
        if text.starts_with("AT+") || text.starts_with("AT@") {
            let cmd = text.trim_end_matches('$').to_string();
            return Ok(Some(match answer(self, &cmd) {
                Some(a) => Incoming::Command {
                    text: cmd,
                    answer: a,
                },
                None => Incoming::Ignored("a command without a serial"),
            }));
        }
        Err(DeviceError(format!(
            "not a Queclink server message: {text:.60}"
        )))
    }
}

/// A GV300 in text mode.
pub struct Text {
    link: Link,
    last_ms: u64,
}

impl Text {
    pub fn new(imei: &str) -> Self {
        Text {
            link: Link {
                imei: imei.to_string(),
                count: 0,
                answered: Vec::new(),
            },
            last_ms: 0,
        }
    }

    fn fri(&mut self, fixes: &[Fix]) -> (Vec<u8>, Vec<u8>) {
        let mut s = format!(
            "+RESP:GTFRI,{VERSION},{},,{},10,{}",
            self.link.imei,
            fixes.last().map_or(0, |f| f.power_mv),
            fixes.len()
        );
        for f in fixes {
            s.push_str(&format!(
                ",{},{:.1},{},{:.1},{:.6},{:.6},{},0246,0002,2A1F,5C11,00",
                (f.hdop.round() as u32).clamp(1, 50),
                f.speed_kmh,
                (f.course.round() as u32) % 360,
                f.altitude,
                f.longitude,
                f.latitude,
                time14(f.time_ms)
            ));
        }
        let last = fixes.last();
        let battery = last.map_or(0, |f| {
            (u32::from(f.battery_mv).saturating_sub(3400) / 8).min(100)
        });
        let km = last.map_or(0.0, |f| f.odometer_m as f64 / 1000.0);
        let count = self.link.next_count();
        s.push_str(&format!(
            ",{km:.1},,,,{battery},210100,,,,{},{count}$",
            time14(last.map_or(0, |f| f.time_ms))
        ));
        (s.into_bytes(), format!("+SACK:{count}$").into_bytes())
    }
}

impl DeviceCodec for Text {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let count = self.link.next_count();
        let hb = format!(
            "+ACK:GTHBD,{VERSION},{},,{},{count}$",
            self.link.imei,
            time14(crate::simulate::track::now_ms())
        );
        Some((
            hb.into_bytes(),
            format!("+SACK:GTHBD,{VERSION},{count}$").into_bytes(),
        ))
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let mut b = Batch {
            units: Vec::new(),
            expected: Vec::new(),
            frames: 0,
            records: 0,
        };
        for chunk in fixes.chunks(MAX_POSITIONS) {
            let (unit, ack) = self.fri(chunk);
            b.units.push(unit);
            b.expected.push(ack);
            b.frames += 1;
            b.records += chunk.len() as u32;
        }
        self.last_ms = fixes.last().map_or(self.last_ms, |f| f.time_ms);
        b
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        let now = self.last_ms;
        self.link.parse(buf, |link, cmd| {
            // `AT+GT<cmd>=<password>,<fields…>,<serial>`.
            let (word, rest) = cmd.strip_prefix("AT+")?.split_once('=')?;
            let serial = rest
                .rsplit(',')
                .next()
                .filter(|s| s.len() == 4)?
                .to_string();
            let sub = match (word, rest.split(',').nth(1)) {
                ("GTRTO", Some("1")) => "RTL,",
                ("GTRTO", Some("3")) => "REBOOT,",
                _ => "",
            };
            let count = link.next_count();
            link.answered.push(count.clone());
            Some(
                format!(
                    "+ACK:{word},{VERSION},{},,{sub}{serial},{},{count}$",
                    link.imei,
                    time14(now)
                )
                .into_bytes(),
            )
        })
    }
}

/// A Protocol Pro (compact binary) device.
pub struct Pro {
    link: Link,
}

/// GV500CNA, protocol version 3.
const PRO_DEVICE_TYPE: u16 = 0x8203;
const PRO_VERSION: u16 = 0x0003;

impl Pro {
    pub fn new(imei: &str) -> Self {
        Pro {
            link: Link {
                imei: imei.to_string(),
                count: 0,
                answered: Vec::new(),
            },
        }
    }

    /// The IMEI as 8 BCD bytes with a leading zero nibble.
    fn imei_bcd(&self) -> [u8; 8] {
        let digits: Vec<u8> = format!("{:0>16}", self.link.imei)
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

    fn record(f: &Fix, count: u16) -> Vec<u8> {
        let secs = (f.time_ms / 1000) as u32;
        let mut item = Vec::with_capacity(24);
        item.push(0x52);
        item.push(22);
        item.push(0x29); // signal 2, fix, 3D
        item.extend_from_slice(&((f.longitude * 1e6).round() as i32).to_be_bytes());
        item.extend_from_slice(&((f.latitude * 1e6).round() as i32).to_be_bytes());
        item.extend_from_slice(&secs.to_be_bytes());
        item.extend_from_slice(&((f.speed_kmh * 10.0).round() as u16).to_be_bytes());
        item.push((f.hdop * 10.0).round().clamp(0.0, 254.0) as u8);
        item.extend_from_slice(&((f.course.round() as u16) % 360).to_be_bytes());
        let alt = (f.altitude * 10.0).round() as i32;
        item.extend_from_slice(&alt.to_be_bytes()[1..]);
        item.push(f.satellites);
        let mut rec = Vec::with_capacity(9 + item.len());
        rec.push(0); // length, set below
        rec.extend_from_slice(&secs.to_be_bytes());
        rec.extend_from_slice(&count.to_be_bytes());
        rec.push(0x50); // fixed report
        rec.push(0x00);
        rec.extend_from_slice(&item);
        rec[0] = rec.len() as u8;
        rec
    }
}

impl DeviceCodec for Pro {
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let count = self.link.count;
        self.link.next_count();
        let mut hb = vec![0x2B, 0x10, 24];
        hb.extend_from_slice(&self.imei_bcd());
        hb.extend_from_slice(&PRO_DEVICE_TYPE.to_be_bytes());
        hb.extend_from_slice(&PRO_VERSION.to_be_bytes());
        hb.push(0);
        hb.extend_from_slice(&((crate::simulate::track::now_ms() / 1000) as u32).to_be_bytes());
        hb.extend_from_slice(&count.to_be_bytes());
        Some((
            frame::seal_compact(hb),
            format!("+SACK:{count:04X}$").into_bytes(),
        ))
    }

    fn batch(&mut self, fixes: &[Fix]) -> Batch {
        let mut b = Batch {
            units: Vec::new(),
            expected: Vec::new(),
            frames: 0,
            records: 0,
        };
        for chunk in fixes.chunks(MAX_RECORDS) {
            let count = self.link.count;
            self.link.next_count();
            let mut f = vec![0x2B, 0x00, 0, 0, 0x00];
            f.extend_from_slice(&self.imei_bcd());
            f.extend_from_slice(&PRO_DEVICE_TYPE.to_be_bytes());
            f.extend_from_slice(&PRO_VERSION.to_be_bytes());
            f.push(0); // custom version
            f.push(0); // reserved length
            for (i, fix) in chunk.iter().enumerate() {
                f.extend_from_slice(&Self::record(fix, count.wrapping_add(i as u16)));
            }
            f.extend_from_slice(&count.to_be_bytes());
            let len = (f.len() + 2) as u16;
            f[2..4].copy_from_slice(&len.to_be_bytes());
            b.units.push(frame::seal_compact(f));
            b.expected.push(format!("+SACK:{count:04X}$").into_bytes());
            b.frames += 1;
            b.records += chunk.len() as u32;
        }
        b
    }

    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError> {
        self.link.parse(buf, |link, cmd| {
            // `AT@<word>…,<sequence>`: answered `+ACK:<word>,<imei>,…,<sequence>,…`.
            let word: String = cmd
                .strip_prefix("AT@")?
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            let seq = cmd.rsplit(',').next().filter(|s| s.len() == 4)?.to_string();
            let count = link.next_count();
            link.answered.push(count.clone());
            Some(
                format!(
                    "+ACK:{word},{},{PRO_DEVICE_TYPE:04X},{PRO_VERSION},0,,{seq},{},{count}$",
                    link.imei,
                    time14(crate::simulate::track::now_ms())
                )
                .into_bytes(),
            )
        })
    }
}
