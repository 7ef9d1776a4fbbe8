//! Text messages, `*<maker>,<id>,<type>,<fields…>#`, into events with their raw values.
//!
//! | type | layout | event |
//! | --- | --- | --- |
//! | `V1` `V2` `V5` `V6` `V8` `V19` `VI1` … | time, validity, lat, N/S, lon, E/W, speed (knots), course, [battery], date, [SIM × 3], status, [data…] | POSITION, or STATUS when the fix cannot be read |
//! | `V4` | command, result…, command time, then the `V1` layout | COMMAND_RESPONSE, and the `V1` layout's event |
//! | `NBR` | time, MCC, MNC, GSM delay, count, (LAC, CID, RSSI)…, date, status | LBS |
//! | `V3` | time, MCC+MNC, count, (LAC, CID, ?, RSSI)…, battery (hex), reboot, `X`, date, status | LBS |
//! | `LINK` | time, RSSI, satellites, battery %, steps, turnovers, date, status | STATUS |
//! | `VP1` (`hq`) | `A`/`B`, lat, N/S, lon, E/W, speed, course, date — or `V`, MCC, MNC, cells `LAC,CID,RSSI` joined by `Y` | POSITION / LBS |
//! | `HTBT` `V0` `XT` | [battery %] / fields | HEARTBEAT |
//! | `SMS` | free text (may hold line breaks) | COMMAND_RESPONSE |
//! | other (`BS`, `BASE`, empty) | fields kept as sent | UNKNOWN |
//!
//! Everything is UTC. The speed is knots (Traccar keeps it so): `position.speed` is km/h,
//! `speed_knots` in `raw` as sent. A message whose fields do not fit its type's layout is
//! still the device's: it is published as UNKNOWN with every field (`decode_error` says why).
//!
//! Lenient input (counted in [`Decoded::lenient`]): numbers padded with spaces
//! (`  3.34`, `  db`: the value is unambiguous), and a message without an id on a session that
//! knows its device (attributed to it).

use crate::event::{attr, raw, timestamp_secs};
use crate::proto::{CellTower, EventKind, Position, Protocol, TelemetryEvent};
use crate::protocol::civil;
use crate::protocol::{AnswerOutcome, DecodeError, ErrorKind};

use super::mapping::name;

/// Knots to km/h.
pub const KNOTS_TO_KMH: f64 = 1.852;

/// Lenient-input labels of this parser.
pub const LENIENT_PADDED_NUMBER: &str = "padded_number";
pub const LENIENT_MISSING_ID: &str = "missing_id";

/// What the server answers to a message (built by the session once the events are
/// delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    None,
    /// `*HQ,<id>,V4,<type>,<yyyyMMddHHmmss>#` (`V1`, `NBR`).
    Confirm(&'static str),
    /// The message echoed up to its type, plus `#` (`HTBT`, `V0`).
    Echo(Vec<u8>),
    /// `*HQ,<id>,R12,<HHmmss>#`, only when the `ack` setting is on.
    AckIfEnabled,
}

/// A `V4` confirmation of a command the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The command name the device echoes (`S20`).
    pub command: String,
    /// The command's own time the device echoes (`HHmmss`), when present.
    pub command_time: Option<String>,
    pub outcome: AnswerOutcome,
}

/// One decoded message (text or binary: the session's input).
#[derive(Debug)]
pub struct Decoded {
    /// The id as sent (may be empty).
    pub id: String,
    pub events: Vec<TelemetryEvent>,
    pub reply: Reply,
    pub confirmation: Option<Confirmation>,
    pub lenient: Vec<&'static str>,
}

/// The head of a text message.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub maker: &'a str,
    pub id: &'a str,
    pub ty: &'a str,
    /// Everything after `<type>,` up to the `#` (empty when the type ends the message).
    pub body: &'a [u8],
    /// Bytes of `*<maker>,<id>,<type>` (the echo of a heartbeat is these plus `#`).
    pub head_len: usize,
}

fn malformed(why: &str) -> DecodeError {
    DecodeError::new(
        ErrorKind::Malformed,
        crate::protocol::Action::Continue,
        why.to_string(),
    )
}

/// Splits `*<maker>,<id>,<type>[,<body>]#`. The maker is two ASCII letters, the id empty or a
/// valid device id, the type ASCII letters and digits.
pub fn head(frame: &[u8]) -> Result<Head<'_>, DecodeError> {
    let inner = frame
        .strip_prefix(b"*")
        .and_then(|f| f.strip_suffix(b"#"))
        .ok_or_else(|| malformed("not *…#"))?;
    let mut parts = inner.splitn(3, |&b| b == b',');
    let maker = parts.next().unwrap_or_default();
    let id = parts.next().ok_or_else(|| malformed("no id field"))?;
    let rest = parts.next().ok_or_else(|| malformed("no type field"))?;
    let (ty, body) = match rest.iter().position(|&b| b == b',') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, &b""[..]),
    };
    if maker.len() != 2 || !maker.iter().all(u8::is_ascii_alphabetic) {
        return Err(malformed("the maker is not two letters"));
    }
    if !id.is_empty() && !crate::device_id::is_valid_bytes(id) {
        return Err(malformed("the id is not a valid device id"));
    }
    if ty.len() > 16 || !ty.iter().all(u8::is_ascii_alphanumeric) {
        return Err(malformed("the type is not letters and digits"));
    }
    // All three were checked to be ASCII.
    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or_default()
    }
    Ok(Head {
        maker: s(maker),
        id: s(id),
        ty: s(ty),
        body,
        head_len: 1 + maker.len() + 1 + id.len() + 1 + ty.len(),
    })
}

/// A new event of this protocol with the text head's raw values.
fn event(kind: EventKind, h: &Head) -> TelemetryEvent {
    TelemetryEvent {
        protocol: Protocol::H02 as i32,
        kind: kind as i32,
        raw: vec![
            raw::string(name::MAKER, h.maker),
            raw::string(name::TYPE, h.ty),
        ],
        ..Default::default()
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_hex8(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn six_digits(s: &str) -> bool {
    s.len() == 6 && all_digits(s)
}

/// Two-digit pairs of a 6-digit field.
fn pairs(s: &str) -> Option<(u8, u8, u8)> {
    if !six_digits(s) {
        return None;
    }
    let p = |i: usize| s.get(i..i + 2).and_then(|x| x.parse::<u8>().ok());
    Some((p(0)?, p(2)?, p(4)?))
}

/// Seconds since the epoch of `hhmmss` and `ddmmyy` (UTC, years 2000–2099).
pub fn date_time(time: &str, date: &str) -> Option<i64> {
    let (h, mi, s) = pairs(time)?;
    let (d, mo, y) = pairs(date)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = civil::days_from_civil(2000 + i64::from(y), mo.into(), d.into());
    Some(days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s))
}

/// Trims the spaces some firmware pads numbers with, noting it.
fn unpad<'a>(s: &'a str, lenient: &mut Vec<&'static str>) -> &'a str {
    let t = s.trim_start_matches(' ');
    if t.len() != s.len() {
        lenient.push(LENIENT_PADDED_NUMBER);
    }
    t
}

/// `d+` or `d+.d*`.
fn decimal(s: &str) -> Option<f64> {
    let mut parts = s.splitn(2, '.');
    let int = parts.next()?;
    let frac = parts.next().unwrap_or("0");
    let frac = if frac.is_empty() { "0" } else { frac };
    if !all_digits(int) || !all_digits(frac) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A coordinate in one of the family's three forms, signed by its hemisphere letter:
/// `ddmm.mmmm` (`d*` degrees then two minute digits, so `38.6508` is 0° 38.6508′),
/// `-dd-mm.mmmm` (the dashes are separators, not signs), and `ddmmmmmm` (minutes ×10⁴
/// without a point).
pub fn coordinate(value: &str, hemisphere: &str, lon: bool) -> Option<f64> {
    let negative = match (hemisphere, lon) {
        ("N", false) | ("E", true) => false,
        ("S", false) | ("W", true) => true,
        _ => return None,
    };
    let (degrees, minutes) = if let Some(rest) = value.strip_prefix('-') {
        let (d, m) = rest.split_once('-')?;
        let (mi, mf) = m.split_once('.')?;
        if !all_digits(d) || !all_digits(mi) || !all_digits(mf) {
            return None;
        }
        (d.parse::<f64>().ok()?, m.parse::<f64>().ok()?)
    } else if let Some((int, frac)) = value.split_once('.') {
        if int.len() < 2 || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let (d, m) = int.split_at(int.len() - 2);
        let degrees = if d.is_empty() {
            0.0
        } else {
            d.parse::<f64>().ok()?
        };
        (degrees, format!("{m}.{frac}").parse::<f64>().ok()?)
    } else {
        if value.len() < 7 || !all_digits(value) {
            return None;
        }
        let (d, rest) = value.split_at(value.len() - 6);
        let (m, f) = rest.split_at(2);
        (
            d.parse::<f64>().ok()?,
            format!("{m}.{f}").parse::<f64>().ok()?,
        )
    };
    let v = degrees + minutes / 60.0;
    let max = if lon { 180.0 } else { 90.0 };
    if !v.is_finite() || v > max {
        return None;
    }
    Some(if negative { -v } else { v })
}

/// The `V1` layout, parsed, before it goes into an event.
#[derive(Debug, Default)]
struct VLayout<'a> {
    time: &'a str,
    validity: &'a str,
    lat: &'a str,
    lat_hemi: &'a str,
    lon: &'a str,
    lon_hemi: &'a str,
    speed: &'a str,
    course: &'a str,
    battery: Option<&'a str>,
    date: Option<&'a str>,
    sim: Option<[&'a str; 3]>,
    status: Option<u32>,
    tail: &'a [&'a str],
}

impl<'a> VLayout<'a> {
    /// Places the fields by position (the layout has no optional field before the course).
    fn parse(f: &'a [&'a str]) -> Option<VLayout<'a>> {
        let [time, validity, lat, lat_hemi, lon, lon_hemi, speed, course, rest @ ..] = f else {
            return None;
        };
        if !(time.is_empty() || six_digits(time)) {
            return None;
        }
        let mut v = VLayout {
            time,
            validity,
            lat,
            lat_hemi,
            lon,
            lon_hemi,
            speed,
            course,
            ..Default::default()
        };
        // [battery,] date — the date slot may be empty.
        let mut i = match rest {
            [d, ..] if six_digits(d) => {
                v.date = Some(d);
                1
            }
            [b, d, ..] if all_digits(b) && six_digits(d) => {
                v.battery = Some(b);
                v.date = Some(d);
                2
            }
            ["", ..] => 1,
            _ => 0,
        };
        // status, or three SIM fields then the status.
        match rest.get(i..).unwrap_or_default() {
            [s, ..] if is_hex8(s) => {
                v.status = u32::from_str_radix(s, 16).ok();
                i += 1;
            }
            [a, b, c, s, ..] if is_hex8(s) => {
                v.sim = Some([a, b, c]);
                v.status = u32::from_str_radix(s, 16).ok();
                i += 4;
            }
            _ => {}
        }
        v.tail = rest.get(i..).unwrap_or_default();
        Some(v)
    }

    /// The fix, when lat/lon/speed read.
    fn fix(&self, lenient: &mut Vec<&'static str>) -> Option<Position> {
        let latitude = coordinate(self.lat, self.lat_hemi, false)?;
        let longitude = coordinate(self.lon, self.lon_hemi, true)?;
        let speed = decimal(unpad(self.speed, lenient))?;
        let course = match self.course {
            "" => None,
            c => Some(decimal(c)?),
        };
        let valid = match self.validity {
            "A" => true,
            v => all_digits(v),
        };
        Some(Position {
            latitude,
            longitude,
            speed: Some(speed * KNOTS_TO_KMH),
            course,
            valid,
            ..Default::default()
        })
    }

    /// Writes the layout into `e`: the fix (or its fields as sent), the time, every value.
    fn emit(&self, e: &mut TelemetryEvent, lenient: &mut Vec<&'static str>) {
        let fix = self.fix(lenient);
        e.raw.push(raw::string(name::VALIDITY, self.validity));
        match decimal(self.speed.trim_start_matches(' ')) {
            Some(knots) => e.raw.push(raw::double(name::SPEED_KNOTS, knots)),
            None if fix.is_none() => {
                e.raw.push(raw::string(name::SPEED, self.speed));
            }
            None => {}
        }
        if fix.is_none() {
            for (n, v) in [
                (name::LATITUDE, self.lat),
                (name::LAT_HEMISPHERE, self.lat_hemi),
                (name::LONGITUDE, self.lon),
                (name::LON_HEMISPHERE, self.lon_hemi),
                (name::COURSE, self.course),
            ] {
                e.raw.push(raw::string(n, v));
            }
        }
        match self.date.and_then(|d| date_time(self.time, d)) {
            Some(secs) => e.device_time = Some(timestamp_secs(secs)),
            None => {
                if !self.time.is_empty() {
                    e.raw.push(raw::string(name::TIME, self.time));
                }
                if let Some(d) = self.date {
                    e.raw.push(raw::string(name::DATE, d));
                }
            }
        }
        if let Some(b) = self.battery.and_then(|b| b.parse::<u64>().ok()) {
            e.raw.push(raw::uint(name::BATTERY, b));
        }
        if let Some(sim) = self.sim {
            for (i, s) in sim.iter().enumerate() {
                e.raw.push(raw::string(
                    name::numbered(name::SIM_INFO_PREFIX, i + 1),
                    *s,
                ));
            }
        }
        if let Some(s) = self.status {
            e.raw.push(raw::uint(name::STATUS, s.into()));
        }
        let mut altitude = None;
        if let Some(ext) = extended_tail(self.tail) {
            e.raw.push(raw::uint(name::ODOMETER, ext.odometer));
            e.raw.push(raw::int(name::TEMPERATURE, ext.temperature));
            e.raw.push(raw::double(name::FUEL, ext.fuel));
            e.raw.push(raw::uint(name::LAC, ext.lac));
            e.raw.push(raw::uint(name::CID, ext.cid));
            altitude = Some(ext.altitude);
        } else {
            for (i, d) in self.tail.iter().enumerate() {
                e.raw
                    .push(raw::string(name::numbered(name::DATA_PREFIX, i + 1), *d));
            }
        }
        if let Some(mut p) = fix {
            p.altitude = altitude.map(|a| a as f64);
            e.position = Some(p);
        } else {
            // No place for the altitude without a fix: it stays raw.
            if let Some(a) = altitude {
                e.raw.push(raw::int(name::ALTITUDE, a));
            }
            e.kind = EventKind::Status as i32;
        }
    }
}

/// The extended tail after the status word: odometer, temperature, fuel, altitude, LAC and
/// cell id (hex).
struct Extended {
    odometer: u64,
    temperature: i64,
    fuel: f64,
    altitude: i64,
    lac: u64,
    cid: u64,
}

fn signed(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !all_digits(digits) {
        return None;
    }
    s.parse().ok()
}

fn extended_tail(t: &[&str]) -> Option<Extended> {
    let [odo, temp, fuel, alt, lac, cid] = t else {
        return None;
    };
    let hex = |s: &str| {
        (!s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    if !all_digits(odo) || !fuel.contains('.') {
        return None;
    }
    Some(Extended {
        odometer: odo.parse().ok()?,
        temperature: signed(temp)?,
        fuel: decimal(fuel)?,
        altitude: signed(alt)?,
        lac: hex(lac)?,
        cid: hex(cid)?,
    })
}

/// Fields of the body, split at commas (UTF-8; a body that is not is no text message).
fn fields(body: &[u8]) -> Result<Vec<&str>, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("fields are not UTF-8"))?;
    Ok(if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').collect()
    })
}

fn push_fields(e: &mut TelemetryEvent, prefix: &str, f: &[&str]) {
    for (i, v) in f.iter().enumerate() {
        e.raw.push(raw::string(name::numbered(prefix, i + 1), *v));
    }
}

/// A message whose fields do not fit its type: published as sent.
fn unknown(h: &Head, f: &[&str], why: &str) -> TelemetryEvent {
    let mut e = event(EventKind::Unknown, h);
    push_fields(&mut e, name::FIELD_PREFIX, f);
    if !why.is_empty() {
        e.set("decode_error", attr::string(why));
    }
    e
}

/// Decodes one text frame (`*` through `#`).
pub fn decode(frame: &[u8]) -> Result<Decoded, DecodeError> {
    let h = head(frame)?;
    let mut out = Decoded {
        id: h.id.to_string(),
        events: Vec::new(),
        reply: Reply::None,
        confirmation: None,
        lenient: Vec::new(),
    };
    if h.ty == "SMS" {
        let text = String::from_utf8_lossy(h.body).into_owned();
        let mut e = event(EventKind::CommandResponse, &h);
        if std::str::from_utf8(h.body).is_err() {
            e.raw.push(raw::bytes(name::SMS_BYTES, h.body));
        }
        e.text = Some(text);
        out.events.push(e);
        return Ok(out);
    }
    let f = fields(h.body)?;
    match h.ty {
        "HTBT" | "V0" | "XT" => {
            let mut e = event(EventKind::Heartbeat, &h);
            match (h.ty, &f[..]) {
                ("HTBT", [b, rest @ ..]) if all_digits(b) => {
                    if let Ok(v) = b.parse::<u64>() {
                        e.raw.push(raw::uint(name::BATTERY_PERCENT, v));
                    }
                    push_fields(&mut e, name::FIELD_PREFIX, rest);
                }
                _ => push_fields(&mut e, name::FIELD_PREFIX, &f),
            }
            if h.ty != "XT" {
                let mut echo = frame.get(..h.head_len).unwrap_or_default().to_vec();
                echo.push(b'#');
                out.reply = Reply::Echo(echo);
            }
            out.events.push(e);
        }
        "NBR" => {
            out.events
                .push(nbr(&h, &f).unwrap_or_else(|| unknown(&h, &f, "NBR layout")));
            out.reply = Reply::Confirm("NBR");
        }
        "LINK" => out
            .events
            .push(link(&h, &f).unwrap_or_else(|| unknown(&h, &f, "LINK layout"))),
        "V3" => out
            .events
            .push(v3(&h, &f).unwrap_or_else(|| unknown(&h, &f, "V3 layout"))),
        "VP1" => out
            .events
            .push(vp1(&h, &f, &mut out.lenient).unwrap_or_else(|| unknown(&h, &f, "VP1 layout"))),
        "V4" => {
            let (events, confirmation) = v4(&h, &f, &mut out.lenient);
            out.events = events;
            out.confirmation = confirmation;
            out.reply = Reply::AckIfEnabled;
        }
        t if t.starts_with('V') => match VLayout::parse(&f) {
            Some(v) => {
                let mut e = event(EventKind::Position, &h);
                v.emit(&mut e, &mut out.lenient);
                out.events.push(e);
                out.reply = if t == "V1" {
                    Reply::Confirm("V1")
                } else {
                    Reply::AckIfEnabled
                };
            }
            None => out
                .events
                .push(unknown(&h, &f, "fewer fields than the V1 layout")),
        },
        _ => out.events.push(unknown(&h, &f, "")),
    }
    Ok(out)
}

/// `V4,<command>,<result…>,<command time>,<V1 layout>`: the confirmation, and the layout's
/// event when one follows.
fn v4(
    h: &Head,
    f: &[&str],
    lenient: &mut Vec<&'static str>,
) -> (Vec<TelemetryEvent>, Option<Confirmation>) {
    let Some((&command, after)) = f.split_first() else {
        return (vec![unknown(h, f, "V4 without a command")], None);
    };
    // The layout starts where the command time (6 digits) is followed by a readable fix.
    let mut found = None;
    for k in 1..after.len() {
        let (Some(t), Some(rest)) = (after.get(k - 1), after.get(k..)) else {
            continue;
        };
        if six_digits(t) {
            if let Some(v) = VLayout::parse(rest) {
                if v.fix(&mut Vec::new()).is_some() {
                    found = Some((k, v));
                    break;
                }
            }
        }
    }
    let (results, command_time) = match &found {
        Some((k, _)) => (
            after.get(..k - 1).unwrap_or_default(),
            after.get(k - 1).copied(),
        ),
        None => (after, None),
    };
    let text = std::iter::once(command)
        .chain(results.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let refused = results.iter().any(|r| r.eq_ignore_ascii_case("ERROR"));
    let mut e = event(EventKind::CommandResponse, h);
    e.raw.push(raw::string(name::COMMAND, command));
    if !results.is_empty() {
        e.raw.push(raw::string(name::RESULT, results.join(",")));
    }
    if let Some(t) = command_time {
        e.raw.push(raw::string(name::COMMAND_TIME, t));
    }
    e.text = Some(text.clone());
    let mut events = vec![e];
    if let Some((_, v)) = found {
        let mut p = event(EventKind::Position, h);
        v.emit(&mut p, lenient);
        events.push(p);
    }
    let confirmation = Confirmation {
        command: command.to_string(),
        command_time: command_time.map(str::to_string),
        outcome: if refused {
            AnswerOutcome::Refused(text)
        } else {
            AnswerOutcome::Text(text)
        },
    };
    (events, Some(confirmation))
}

fn uint(s: &str) -> Option<u64> {
    all_digits(s).then(|| s.parse().ok()).flatten()
}

fn u32_of(s: &str) -> Option<u32> {
    all_digits(s).then(|| s.parse().ok()).flatten()
}

/// The date and status closing an LBS-style message, with the device time.
fn close_with(e: &mut TelemetryEvent, time: &str, date: &str, status: &str) -> Option<()> {
    if !six_digits(date) || !is_hex8(status) {
        return None;
    }
    match date_time(time, date) {
        Some(secs) => e.device_time = Some(timestamp_secs(secs)),
        None => {
            e.raw.push(raw::string(name::TIME, time));
            e.raw.push(raw::string(name::DATE, date));
        }
    }
    e.raw.push(raw::uint(
        name::STATUS,
        u32::from_str_radix(status, 16).ok()?.into(),
    ));
    Some(())
}

/// `NBR,<time>,<mcc>,<mnc>,<gsm delay>,<count>,(<lac>,<cid>,<rssi>)…,<date>,<status>[,…]`.
fn nbr(h: &Head, f: &[&str]) -> Option<TelemetryEvent> {
    let [time, mcc, mnc, delay, count, rest @ ..] = f else {
        return None;
    };
    if !six_digits(time) {
        return None;
    }
    let (mcc, mnc, delay, count) = (u32_of(mcc)?, u32_of(mnc)?, uint(delay)?, uint(count)?);
    let closes = |n: usize| {
        rest.get(n * 3).is_some_and(|d| six_digits(d))
            && rest.get(n * 3 + 1).is_some_and(|s| is_hex8(s))
    };
    // The announced count when the date and status follow its cells; else the most cells
    // that leave a date and a status (as Traccar's pattern reads it).
    let cells = usize::try_from(count)
        .ok()
        .filter(|&n| n <= rest.len() / 3 && closes(n))
        .or_else(|| (1..=rest.len() / 3).rev().find(|&n| closes(n)))?;
    let mut e = event(EventKind::Lbs, h);
    e.raw.push(raw::uint(name::GSM_DELAY, delay));
    e.raw.push(raw::uint(name::CELL_COUNT, count));
    for c in rest.get(..cells * 3)?.chunks_exact(3) {
        let [lac, cid, rssi] = c else { return None };
        e.cell_towers.push(tower(mcc, mnc, lac, cid, rssi)?);
    }
    close_with(&mut e, time, rest.get(cells * 3)?, rest.get(cells * 3 + 1)?)?;
    push_fields(
        &mut e,
        name::FIELD_PREFIX,
        rest.get(cells * 3 + 2..).unwrap_or_default(),
    );
    Some(e)
}

/// `LINK,<time>,<rssi>,<satellites>,<battery %>,<steps>,<turnovers>,<date>,<status>[,…]`.
fn link(h: &Head, f: &[&str]) -> Option<TelemetryEvent> {
    let [time, rssi, sats, battery, steps, turnovers, date, status, rest @ ..] = f else {
        return None;
    };
    if !six_digits(time) {
        return None;
    }
    let mut e = event(EventKind::Status, h);
    for (n, v) in [
        (name::RSSI, rssi),
        (name::SATELLITES, sats),
        (name::BATTERY_PERCENT, battery),
        (name::STEPS, steps),
        (name::TURNOVERS, turnovers),
    ] {
        e.raw.push(raw::uint(n, uint(v)?));
    }
    close_with(&mut e, time, date, status)?;
    push_fields(&mut e, name::FIELD_PREFIX, rest);
    Some(e)
}

/// `V3,<time>,<mcc><mnc>,<count>,(<lac>,<cid>,<?>,<rssi>)…,<battery hex>,<reboot>,X,<date>,<status>`.
fn v3(h: &Head, f: &[&str]) -> Option<TelemetryEvent> {
    let [time, mccmnc, count, rest @ ..] = f else {
        return None;
    };
    let [cells @ .., battery, reboot, x, date, status] = rest else {
        return None;
    };
    if !six_digits(time) || *x != "X" || mccmnc.len() < 4 || !all_digits(mccmnc) {
        return None;
    }
    if battery.len() != 4 || !battery.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (mcc, mnc) = mccmnc.split_at(3);
    let (mcc, mnc) = (u32_of(mcc)?, u32_of(mnc)?);
    let count = uint(count)?;
    if usize::try_from(count).ok()? * 4 != cells.len() {
        return None;
    }
    let mut e = event(EventKind::Lbs, h);
    e.raw.push(raw::uint(name::CELL_COUNT, count));
    for (i, c) in cells.chunks_exact(4).enumerate() {
        let [lac, cid, third, rssi] = c else {
            return None;
        };
        let signal = match *rssi {
            "" => None,
            s => Some(i32::try_from(signed(s)?).ok()?),
        };
        e.cell_towers.push(CellTower {
            mcc,
            mnc,
            lac: uint(lac)?,
            cell_id: uint(cid)?,
            signal,
        });
        e.raw.push(raw::string(name::cell_field3(i + 1), *third));
    }
    e.raw.push(raw::uint(
        name::V3_BATTERY,
        u64::from_str_radix(battery, 16).ok()?,
    ));
    e.raw.push(raw::uint(name::REBOOT, uint(reboot)?));
    close_with(&mut e, time, date, status)?;
    Some(e)
}

/// `VP1,A|B,<lat>,<N|S>,<lon>,<E|W>,<speed>,<course>,<ddmmyy>` or
/// `VP1,V,<mcc>,<mnc>,<lac>,<cid>,<rssi>Y<lac>,<cid>,<rssi>…`.
fn vp1(h: &Head, f: &[&str], lenient: &mut Vec<&'static str>) -> Option<TelemetryEvent> {
    match f {
        ["V", mcc, mnc, cells @ ..] if !cells.is_empty() => {
            let (mcc, mnc) = (u32_of(mcc)?, u32_of(mnc)?);
            let mut e = event(EventKind::Lbs, h);
            e.raw.push(raw::string(name::VALIDITY, "V"));
            let joined = cells.join(",");
            for cell in joined.split('Y') {
                let [lac, cid, rssi] = cell.split(',').collect::<Vec<_>>()[..] else {
                    return None;
                };
                e.cell_towers.push(tower(mcc, mnc, lac, cid, rssi)?);
            }
            Some(e)
        }
        [validity @ ("A" | "B"), lat, lat_hemi, lon, lon_hemi, speed, course, date, rest @ ..] => {
            let speed_value = decimal(unpad(speed, lenient))?;
            let mut e = event(EventKind::Position, h);
            e.position = Some(Position {
                latitude: coordinate(lat, lat_hemi, false)?,
                longitude: coordinate(lon, lon_hemi, true)?,
                speed: Some(speed_value * KNOTS_TO_KMH),
                course: Some(decimal(course)?),
                valid: true,
                ..Default::default()
            });
            e.raw.push(raw::string(name::VALIDITY, *validity));
            e.raw.push(raw::double(name::SPEED_KNOTS, speed_value));
            // A date without a time of day: no device time (Traccar stamps midnight).
            if !six_digits(date) {
                return None;
            }
            e.raw.push(raw::string(name::DATE, *date));
            push_fields(&mut e, name::FIELD_PREFIX, rest);
            Some(e)
        }
        _ => None,
    }
}

/// One cell of a `V3`/`VP1`-style list: LAC, cell id and signal as text.
fn tower(mcc: u32, mnc: u32, lac: &str, cid: &str, rssi: &str) -> Option<CellTower> {
    Some(CellTower {
        mcc,
        mnc,
        lac: uint(lac)?,
        cell_id: uint(cid)?,
        signal: Some(i32::try_from(signed(rssi)?).ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_in_every_form() {
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-5);
        assert!(close(coordinate("2235.1777", "N", false), 22.586295));
        assert!(close(coordinate("11357.8913", "E", true), 113.964855));
        assert!(close(coordinate("38.6508", "W", true), -0.64418));
        assert!(close(coordinate("809.0010", "S", false), -8.150017));
        assert!(close(coordinate("-23-29.0095", "S", false), -23.48349));
        assert!(close(coordinate("-46-51.5852", "W", true), -46.85975));
        assert!(close(coordinate("37573392", "S", false), -37.955653));
        assert!(close(coordinate("145037022", "E", true), 145.061703));
        assert_eq!(coordinate("0.0000", "0", false), None);
        assert_eq!(coordinate("", "N", false), None);
        assert_eq!(coordinate("9100.0000", "N", false), None);
        assert_eq!(coordinate("12a4.5", "N", false), None);
        assert_eq!(coordinate("2235.1777", "E", false), None);
        assert_eq!(coordinate("-23-", "S", false), None);
        assert_eq!(coordinate("5.", "N", false), None);
    }

    #[test]
    fn heads() {
        let h = head(b"*HQ,4106012736,V1,224434#").unwrap();
        assert_eq!(
            (h.maker, h.id, h.ty, h.body),
            ("HQ", "4106012736", "V1", &b"224434"[..])
        );
        let h = head(b"*HQ,135790246811220,HTBT#").unwrap();
        assert_eq!((h.ty, h.body, h.head_len), ("HTBT", &b""[..], 24));
        let h = head(b"*HQ,,V1,1#").unwrap();
        assert_eq!(h.id, "");
        let h = head(b"*HQ,4109198974,#").unwrap();
        assert_eq!(h.ty, "");
        for bad in [
            &b"*H,1,V1#"[..],
            b"*HQ#",
            b"*HQ,1#",
            b"*H1,1,V1#",
            b"*HQ,1/2,V1#",
            b"*HQ,1,V 1,#",
            b"HQ,1,V1#",
        ] {
            assert!(head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn times() {
        assert_eq!(date_time("000000", "010100"), Some(946_684_800));
        assert_eq!(date_time("213945", "221025"), Some(1_761_169_185));
        assert_eq!(date_time("240000", "221025"), None);
        assert_eq!(date_time("120000", "000000"), None);
        assert_eq!(date_time("", "221025"), None);
    }
}
