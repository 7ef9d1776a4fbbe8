//! GPS103 messages: what one framed message is, and its fields as typed values.
//!
//! - `##,imei:<IMEI>,A` — login (answered `LOAD`).
//! - `<IMEI>` — heartbeat (answered `ON`); `<IMEI>imei:<IMEI>,…` is a heartbeat glued to a
//!   report (one firmware sends that), answered `ON` and decoded as the report.
//! - `imei:<IMEI>,<keyword>,<local time>,<phone|rfid>,<F|L>,…` — a report: with `F` the UTC
//!   time, validity and coordinates follow; with `L` (no fix) the LAC and cell id in hex.
//! - `imei:<IMEI>,OBD,…` — OBD values; `imei:<IMEI>,vr,<hex>` — one photo chunk.
//! - a report ending in `*` — the "alternative" form (decimal degrees, `hhmmss,ddmmyy`).
//! - `imei:<IMEI>` with at most one more field (`imei:<IMEI>,L,*`) — answered `LOAD` like a
//!   login, as Traccar does for every message of 30 characters or fewer holding `imei:`.
//!
//! Everything here reads bytes with checked access; field values are ASCII where the layout
//! needs numbers, anything else where the device writes free text (keyword, phone).

use super::frame::{End, MAX_ID_DIGITS};
use crate::protocol::civil;

/// Digits a bare heartbeat id has at least (an IMEI); the `imei:` label needs no such bound.
pub const MIN_HEARTBEAT_DIGITS: usize = 15;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a GPS103 message")]
    Unknown,
    #[error("device id is not 1..={MAX_ID_DIGITS} digits")]
    BadId,
    #[error("{0}")]
    Field(&'static str),
}

/// A framed message, classified.
#[derive(Debug, PartialEq)]
pub enum Sentence<'a> {
    Login {
        id: &'a str,
    },
    Heartbeat {
        id: &'a str,
    },
    /// `imei:<id>,…` split at commas; `fields[0]` is `imei:<id>`.
    Report {
        id: &'a str,
        /// The report's text (after a glued heartbeat).
        text: &'a [u8],
        fields: Vec<&'a [u8]>,
        /// A heartbeat came glued in front (`<IMEI>imei:…`).
        glued: bool,
        /// Ended in `*`: the alternative form.
        alternative: bool,
    },
}

/// Classifies one message (its terminator removed).
pub fn classify(text: &[u8], end: End) -> Result<Sentence<'_>, ParseError> {
    if let Some(rest) = text.strip_prefix(b"##,") {
        let label = rest.strip_prefix(b"imei:").ok_or(ParseError::Unknown)?;
        let id_len = label.iter().take_while(|b| b.is_ascii_digit()).count();
        let id = id_str(label.get(..id_len).unwrap_or_default())?;
        return match label.get(id_len) {
            None | Some(b',') => Ok(Sentence::Login { id }),
            Some(_) => Err(ParseError::BadId),
        };
    }
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 {
        if !(MIN_HEARTBEAT_DIGITS..=MAX_ID_DIGITS).contains(&digits) {
            return Err(ParseError::BadId);
        }
        let id = id_str(text.get(..digits).unwrap_or_default())?;
        let rest = text.get(digits..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(Sentence::Heartbeat { id });
        }
        if !rest.starts_with(b"imei:") {
            return Err(ParseError::Unknown);
        }
        return match report(rest, end)? {
            Sentence::Report {
                id,
                text,
                fields,
                alternative,
                ..
            } => Ok(Sentence::Report {
                id,
                text,
                fields,
                glued: true,
                alternative,
            }),
            // `<IMEI>imei:<IMEI>` alone: still a heartbeat (Traccar answers `ON` to anything
            // that starts with a digit, before looking for `imei:`).
            Sentence::Login { .. } | Sentence::Heartbeat { .. } => Ok(Sentence::Heartbeat { id }),
        };
    }
    if text.starts_with(b"imei:") {
        return report(text, end);
    }
    Err(ParseError::Unknown)
}

fn report(text: &[u8], end: End) -> Result<Sentence<'_>, ParseError> {
    let fields: Vec<&[u8]> = text.split(|&b| b == b',').collect();
    let first = fields.first().copied().unwrap_or_default();
    let id = id_str(first.get(5..).unwrap_or_default())?;
    // `imei:<id>`, `imei:<id>,X` or `imei:<id>,X,` (from `…,X,*`): a short login form.
    let significant = match fields.last() {
        Some(l) if l.is_empty() && fields.len() > 1 => fields.len() - 1,
        _ => fields.len(),
    };
    if significant <= 2 {
        return Ok(Sentence::Login { id });
    }
    Ok(Sentence::Report {
        id,
        text,
        fields,
        glued: false,
        alternative: end == End::Star,
    })
}

fn id_str(digits: &[u8]) -> Result<&str, ParseError> {
    if digits.is_empty() || digits.len() > MAX_ID_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadId);
    }
    std::str::from_utf8(digits).map_err(|_| ParseError::BadId)
}

// ---------------------------------------------------------------------------------------------
// Field readers

/// A calendar date and clock time as the device's clock shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    /// `None` when the field had minutes only (`yymmddhhmm`).
    pub second: Option<u32>,
}

impl Civil {
    /// Seconds since the epoch, reading the clock as UTC.
    pub fn secs(&self) -> i64 {
        civil::days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second.unwrap_or(0))
    }
}

/// A UTC time of day with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        _ => 28,
    }
}

fn two(d: &[u32], i: usize) -> u32 {
    d.get(i).copied().unwrap_or(0) * 10 + d.get(i + 1).copied().unwrap_or(0)
}

/// The local date and time field: `yymmddhhmm`, `yymmddhhmmss`, or the same with `/`, ` `
/// and `:` between the parts (`13/02/27 23:40`). `None` for anything else, including the
/// all-zero placeholder some firmware sends before its clock is set (`000000000`).
pub fn local_time(f: &[u8]) -> Option<Civil> {
    if f.len() > 20 {
        return None;
    }
    let mut d = Vec::with_capacity(12);
    for &b in f {
        match b {
            b'0'..=b'9' => d.push(u32::from(b - b'0')),
            b'/' | b' ' | b':' => {}
            _ => return None,
        }
    }
    if d.len() != 10 && d.len() != 12 {
        return None;
    }
    let c = Civil {
        year: 2000 + i64::from(two(&d, 0)),
        month: two(&d, 2),
        day: two(&d, 4),
        hour: two(&d, 6),
        minute: two(&d, 8),
        second: (d.len() == 12).then(|| two(&d, 10)),
    };
    let valid = (1..=12).contains(&c.month)
        && (1..=days_in_month(c.year, c.month)).contains(&c.day)
        && c.hour < 24
        && c.minute < 60
        && c.second.is_none_or(|s| s < 60);
    valid.then_some(c)
}

/// `hhmmss` or `hhmmss.f…` (milliseconds from the first three fraction digits).
pub fn time_of_day(f: &[u8]) -> Option<TimeOfDay> {
    let (hms, frac) = match f.iter().position(|&b| b == b'.') {
        Some(i) => (f.get(..i)?, f.get(i + 1..)?),
        None => (f, &b""[..]),
    };
    if hms.len() != 6 || !hms.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if f.contains(&b'.') && (frac.is_empty() || !frac.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    let d: Vec<u32> = hms.iter().map(|&b| u32::from(b - b'0')).collect();
    let mut millis = 0;
    for i in 0..3 {
        millis = millis * 10 + frac.get(i).map_or(0, |&b| u32::from(b - b'0'));
    }
    let t = TimeOfDay {
        hour: two(&d, 0),
        minute: two(&d, 2),
        second: two(&d, 4),
        millis,
    };
    (t.hour < 24 && t.minute < 60 && t.second < 60).then_some(t)
}

/// The alternative form's `hhmmss` and `ddmmyy`, as seconds since the epoch (UTC).
pub fn time_and_date(time: &[u8], date: &[u8]) -> Option<i64> {
    let t = time_of_day(time).filter(|_| !time.contains(&b'.'))?;
    if date.len() != 6 || !date.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let d: Vec<u32> = date.iter().map(|&b| u32::from(b - b'0')).collect();
    let (day, month, year) = (two(&d, 0), two(&d, 2), 2000 + i64::from(two(&d, 4)));
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    Some(
        civil::days_from_civil(year, month, day) * 86_400
            + i64::from(t.hour * 3600 + t.minute * 60 + t.second),
    )
}

/// Traccar's reconciliation of the local clock with the UTC time of the fix: the date is the
/// local one, the time of day the UTC one, and the day rolls back or forward when the two
/// clocks differ by more than 12 hours (the local date is already tomorrow, or still
/// yesterday). Returns milliseconds since the epoch and the clocks' difference in minutes.
pub fn reconcile(local: &Civil, utc: &TimeOfDay) -> (i64, i32) {
    let local_minutes = (local.hour * 60 + local.minute) as i32;
    let utc_minutes = (utc.hour * 60 + utc.minute) as i32;
    let mut delta = local_minutes - utc_minutes;
    if delta <= -12 * 60 {
        delta += 24 * 60;
    } else if delta > 12 * 60 {
        delta -= 24 * 60;
    }
    let base = civil::days_from_civil(local.year, local.month, local.day) * 86_400
        + i64::from(local.hour * 3600 + local.minute * 60 + utc.second)
        - i64::from(delta) * 60;
    (base * 1000 + i64::from(utc.millis), delta)
}

/// `ddmm.mmmm` / `dddmm.mmmm` (degrees, then two digits of whole minutes and their fraction)
/// as degrees, at most `max`.
pub fn degrees_minutes(f: &[u8], max: f64) -> Option<f64> {
    let dot = f.iter().position(|&b| b == b'.')?;
    if dot < 3 {
        return None;
    }
    let (int, frac) = (f.get(..dot)?, f.get(dot + 1..)?);
    if frac.is_empty()
        || !int.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
        || int.len() > 5
    {
        return None;
    }
    let s = std::str::from_utf8(f).ok()?;
    let deg: f64 = s.get(..dot - 2)?.parse().ok()?;
    let min: f64 = s.get(dot - 2..)?.parse().ok()?;
    let v = deg + min / 60.0;
    (min < 60.0 && v <= max).then_some(v)
}

/// A decimal number as devices write them: `12`, `12.5`, `.5`, `-3.2`, `+11` (a sign only
/// when `signed`). No exponent, no spaces, no `inf`.
pub fn decimal(f: &[u8], signed: bool) -> Option<f64> {
    let body = match f.first() {
        Some(b'-' | b'+') if signed => f.get(1..)?,
        _ => f,
    };
    let mut digits = 0;
    let mut dots = 0;
    for &b in body {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return None,
        }
    }
    if digits == 0 || dots > 1 || body.len() > 24 {
        return None;
    }
    let s = std::str::from_utf8(f).ok()?;
    let s = s.strip_prefix('+').unwrap_or(s);
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A percentage as sent: `10.5%`.
pub fn percent(f: &[u8]) -> Option<f64> {
    decimal(f.strip_suffix(b"%")?, false)
}

/// A hexadecimal number (LAC, cell id) of at most 16 digits.
pub fn hex_number(f: &[u8]) -> Option<u64> {
    if f.is_empty() || f.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(f).ok()?, 16).ok()
}

/// An OBD diagnostic trouble code: `P0137`, `U1108` (letter, four hex digits).
pub fn is_dtc(f: &[u8]) -> bool {
    matches!(f, [b'P' | b'C' | b'B' | b'U', rest @ ..] if rest.len() == 4 && rest.iter().all(u8::is_ascii_hexdigit))
}

/// `0` or `1`.
pub fn flag(f: &[u8]) -> Option<u64> {
    match f {
        b"0" => Some(0),
        b"1" => Some(1),
        _ => None,
    }
}

/// Hex text as bytes (`None` for an odd length or a non-hex digit).
pub fn hex_bytes(f: &[u8]) -> Option<Vec<u8>> {
    if f.len() % 2 != 0 {
        return None;
    }
    let nibble = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    f.chunks_exact(2)
        .map(|p| Some(nibble(*p.first()?)? << 4 | nibble(*p.get(1)?)?))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reports

/// Where a report says the device is.
#[derive(Debug, Clone, PartialEq)]
pub enum Located {
    /// `F`: a GNSS position (valid or the last known one).
    Fix {
        latitude: f64,
        longitude: f64,
        valid: bool,
        /// Knots, as sent.
        speed_knots: Option<f64>,
        course: Option<f64>,
        altitude: Option<f64>,
    },
    /// `L` with the serving cell (no MCC/MNC in the message).
    Cell { lac: u64, cell_id: u64 },
    /// `L` without a cell, or no fix field.
    Nowhere,
}

/// A regular report, its layout read; `used` marks the fields the layout consumed (the
/// others are raw values of their own).
#[derive(Debug, Clone, PartialEq)]
pub struct Report<'a> {
    pub id: &'a str,
    pub fields: Vec<&'a [u8]>,
    pub keyword: &'a [u8],
    pub local: Option<Civil>,
    pub utc: Option<TimeOfDay>,
    pub located: Located,
    /// Field indexes whose value is in `located` (not in raw).
    pub used: Vec<usize>,
    /// Tolerated deviations from the documented layout (counted as lenient input).
    pub quirks: Vec<&'static str>,
}

/// Field indexes of the regular layout.
pub mod at {
    pub const KEYWORD: usize = 1;
    pub const LOCAL_TIME: usize = 2;
    pub const PHONE: usize = 3;
    pub const FIX: usize = 4;
    pub const UTC_TIME: usize = 5;
    pub const VALIDITY: usize = 6;
    pub const LATITUDE: usize = 7;
    pub const LAT_HEMISPHERE: usize = 8;
    pub const LONGITUDE: usize = 9;
    pub const LON_HEMISPHERE: usize = 10;
    pub const SPEED: usize = 11;
    pub const COURSE: usize = 12;
    pub const ALTITUDE: usize = 13;
    pub const ACC: usize = 14;
    pub const DOOR: usize = 15;
    pub const FUEL1: usize = 16;
    pub const FUEL2: usize = 17;
    pub const TEMPERATURE: usize = 18;
}

/// Lenient-input labels of reports.
pub mod quirk {
    /// `A,N,5306.64155,E,00700.77848` (hemisphere before each coordinate).
    pub const HEMISPHERE_FIRST: &str = "hemisphere_first";
    /// An empty hemisphere field: read as north / east, as Traccar does.
    pub const MISSING_HEMISPHERE: &str = "missing_hemisphere";
}

impl<'a> Report<'a> {
    /// Reads the regular layout (`fields[0]` is `imei:<id>`).
    pub fn parse(id: &'a str, fields: Vec<&'a [u8]>) -> Result<Report<'a>, ParseError> {
        let f = |i: usize| fields.get(i).copied().unwrap_or_default();
        let mut r = Report {
            id,
            keyword: f(at::KEYWORD),
            local: local_time(f(at::LOCAL_TIME)),
            utc: None,
            located: Located::Nowhere,
            used: Vec::new(),
            quirks: Vec::new(),
            fields: Vec::new(),
        };
        match f(at::FIX) {
            b"F" => {
                r.utc = time_of_day(f(at::UTC_TIME));
                let valid = match f(at::VALIDITY) {
                    b"A" => true,
                    b"V" => false,
                    _ => return Err(ParseError::Field("validity is neither A nor V")),
                };
                // `lat,N,lon,E` or (one firmware) `N,lat,E,lon`.
                let (lat, ns, lon, ew) = if matches!(f(at::LATITUDE), b"N" | b"S") {
                    r.quirks.push(quirk::HEMISPHERE_FIRST);
                    (
                        f(at::LAT_HEMISPHERE),
                        f(at::LATITUDE),
                        f(at::LON_HEMISPHERE),
                        f(at::LONGITUDE),
                    )
                } else {
                    (
                        f(at::LATITUDE),
                        f(at::LAT_HEMISPHERE),
                        f(at::LONGITUDE),
                        f(at::LON_HEMISPHERE),
                    )
                };
                let lat = degrees_minutes(lat, 90.0)
                    .ok_or(ParseError::Field("latitude is not ddmm.mmmm"))?;
                let lon = degrees_minutes(lon, 180.0)
                    .ok_or(ParseError::Field("longitude is not dddmm.mmmm"))?;
                let sign = |h: &[u8], neg: &[u8], pos: &[u8]| -> Result<f64, ParseError> {
                    if h == neg {
                        Ok(-1.0)
                    } else if h == pos || h.is_empty() {
                        Ok(1.0)
                    } else {
                        Err(ParseError::Field("hemisphere is not N/S or E/W"))
                    }
                };
                if ns.is_empty() || ew.is_empty() {
                    r.quirks.push(quirk::MISSING_HEMISPHERE);
                }
                let latitude = lat * sign(ns, b"S", b"N")?;
                let longitude = lon * sign(ew, b"W", b"E")?;
                let mut num = |i: usize, signed: bool, max: f64| {
                    let v = decimal(f(i), signed).filter(|v| v.abs() <= max);
                    if v.is_some() {
                        r.used.push(i);
                    }
                    v
                };
                let speed_knots = num(at::SPEED, false, 10_000.0);
                let course = num(at::COURSE, false, 360.0);
                let altitude = num(at::ALTITUDE, true, 100_000.0);
                r.used.extend([
                    at::VALIDITY,
                    at::LATITUDE,
                    at::LAT_HEMISPHERE,
                    at::LONGITUDE,
                    at::LON_HEMISPHERE,
                ]);
                r.located = Located::Fix {
                    latitude,
                    longitude,
                    valid,
                    speed_knots,
                    course,
                    altitude,
                };
            }
            b"L" => {
                if let (Some(lac), Some(cell_id)) =
                    (hex_number(f(at::LATITUDE)), hex_number(f(at::LONGITUDE)))
                {
                    r.located = Located::Cell { lac, cell_id };
                    r.used.extend([at::LATITUDE, at::LONGITUDE]);
                }
            }
            _ => {}
        }
        r.fields = fields;
        Ok(r)
    }
}

/// One photo chunk (`vr`): its index and its JPEG bytes. The chunk is `index` (u16 LE),
/// `length` (u16 LE), `length` bytes, and two trailing bytes (not documented, not checked:
/// Traccar drops them too). A length that does not match the chunk is refused.
pub fn photo_chunk(chunk: &[u8]) -> Result<(u16, &[u8]), ParseError> {
    let short = ParseError::Field("photo chunk shorter than its header");
    let index = u16::from_le_bytes([
        *chunk.first().ok_or(short.clone())?,
        *chunk.get(1).ok_or(short.clone())?,
    ]);
    let len = u16::from_le_bytes([
        *chunk.get(2).ok_or(short.clone())?,
        *chunk.get(3).ok_or(short)?,
    ]);
    let data_len = chunk.len().checked_sub(6);
    if data_len != Some(usize::from(len)) {
        return Err(ParseError::Field(
            "photo chunk length does not match its bytes",
        ));
    }
    let data = chunk.get(4..4 + usize::from(len)).ok_or(ParseError::Field(
        "photo chunk length does not match its bytes",
    ))?;
    Ok((index, data))
}

/// `vtNN`: the report announcing a photo of NN chunks.
pub fn photo_announce(keyword: &[u8]) -> Option<u16> {
    let n = keyword.strip_prefix(b"vt")?;
    if n.is_empty() || n.len() > 5 || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(n).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified() {
        assert_eq!(
            classify(b"##,imei:359586015829802,A", End::Semicolon),
            Ok(Sentence::Login {
                id: "359586015829802"
            })
        );
        assert_eq!(
            classify(b"359586015829802", End::Semicolon),
            Ok(Sentence::Heartbeat {
                id: "359586015829802"
            })
        );
        assert_eq!(
            classify(b"imei:123451234512345,L,", End::Star),
            Ok(Sentence::Login {
                id: "123451234512345"
            })
        );
        let Ok(Sentence::Report {
            id,
            text,
            fields,
            glued,
            alternative,
        }) = classify(
            b"359769031878322imei:359769031878322,tracker,x",
            End::LineEnd,
        )
        else {
            panic!()
        };
        assert_eq!(
            (id, fields.len(), glued, alternative),
            ("359769031878322", 3, true, false)
        );
        assert_eq!(text, b"imei:359769031878322,tracker,x");
        let Ok(Sentence::Report { alternative, .. }) = classify(b"imei:1,Equipo 1,---,", End::Star)
        else {
            panic!()
        };
        assert!(alternative);
        for bad in [
            &b"##,imei:,A"[..],
            b"##,imei:12a,A",
            b"##,IMEI:1,A",
            b"12345",
            b"359586015829802x",
            b"123456789012345678901",
            b"imei:,tracker,x",
            b"imei:1234567890123456789012,tracker,x",
            b"GET / HTTP/1.1",
            b"",
        ] {
            assert!(classify(bad, End::Semicolon).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_times_in_every_form() {
        let c = |y, mo, d, h, mi, s| Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
        };
        assert_eq!(
            local_time(b"0809231929"),
            Some(c(2008, 9, 23, 19, 29, None))
        );
        assert_eq!(
            local_time(b"151030080103"),
            Some(c(2015, 10, 30, 8, 1, Some(3)))
        );
        assert_eq!(
            local_time(b"13/02/27 23:40"),
            Some(c(2013, 2, 27, 23, 40, None))
        );
        for bad in [
            &b"000000000"[..],
            b"0000000119",
            b"---",
            b"",
            b"1302302340",
            b"1313012340",
            b"1302272440",
            b"130227234060",
            b"1302x72340",
        ] {
            assert_eq!(local_time(bad), None, "{bad:?}");
        }
        assert_eq!(local_time(b"1602290000").map(|c| c.day), Some(29));
        assert_eq!(local_time(b"1502290000"), None, "2015 is no leap year");
    }

    #[test]
    fn utc_times_and_reconciliation_as_traccar_does_it() {
        assert_eq!(
            time_of_day(b"055403.297"),
            Some(TimeOfDay {
                hour: 5,
                minute: 54,
                second: 3,
                millis: 297
            })
        );
        assert_eq!(time_of_day(b"064947").map(|t| t.millis), Some(0));
        assert_eq!(time_of_day(b"215653.5").map(|t| t.millis), Some(500));
        for bad in [&b"31.0"[..], b"0.0", b"", b"245959", b"12345.6", b"120000."] {
            assert_eq!(time_of_day(bad), None, "{bad:?}");
        }
        // Local 2015-10-27 02:59 (UTC+3), UTC 23:59:57: still the 26th in UTC.
        let local = local_time(b"151027025958").unwrap();
        let (ms, delta) = reconcile(&local, &time_of_day(b"235957.000").unwrap());
        assert_eq!(delta, 180);
        assert_eq!(ms, 1_445_903_997_000);
        // Local 04:14:19, UTC 01:15:31: a clock 179 minutes ahead, same day.
        let local = local_time(b"151027041419").unwrap();
        let (ms, _) = reconcile(&local, &time_of_day(b"011531.000").unwrap());
        assert_eq!(ms / 1000, 1_445_908_531);
        // Local behind UTC across midnight: local 2020-01-01 23:30 at UTC-5, UTC 04:30 the
        // next day.
        let local = local_time(b"2001012330").unwrap();
        let (ms, delta) = reconcile(&local, &time_of_day(b"043000").unwrap());
        assert_eq!(delta, -300);
        assert_eq!(ms / 1000, 1_577_939_400);
    }

    #[test]
    fn coordinates_numbers_and_codes() {
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(close(
            degrees_minutes(b"5443.3834", 90.0),
            54.0 + 43.3834 / 60.0
        ));
        assert!(close(
            degrees_minutes(b"9232.12238", 180.0),
            92.0 + 32.12238 / 60.0
        ));
        assert!(close(
            degrees_minutes(b"0610.1133", 90.0),
            6.0 + 10.1133 / 60.0
        ));
        for bad in [
            &b"5460.0000"[..],
            b"9100.0000",
            b"43.3834",
            b"5443",
            b"54a3.1",
            b"5443.",
            b"",
        ] {
            assert_eq!(degrees_minutes(bad, 90.0), None, "{bad:?}");
        }
        assert_eq!(decimal(b"+11", true), Some(11.0));
        assert_eq!(decimal(b"-0.1", true), Some(-0.1));
        assert_eq!(decimal(b"-0.1", false), None);
        assert_eq!(decimal(b"1e5", false), None);
        assert_eq!(decimal(b"+", true), None);
        assert_eq!(decimal(b"1.2.3", false), None);
        assert_eq!(percent(b"10.5%"), Some(10.5));
        assert_eq!(percent(b"10.5"), None);
        assert_eq!(hex_number(b"296a"), Some(0x296a));
        assert_eq!(hex_number(b"0FB6"), Some(0x0fb6));
        assert_eq!(hex_number(b"xyz"), None);
        assert!(is_dtc(b"P0137") && is_dtc(b"U1108") && !is_dtc(b"P013") && !is_dtc(b"X0137"));
        assert_eq!(hex_bytes(b"0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_bytes(b"0aF"), None);
        assert_eq!(hex_bytes(b"0g"), None);
        assert_eq!(photo_announce(b"vt14"), Some(14));
        assert_eq!(photo_announce(b"vt"), None);
        assert_eq!(photo_announce(b"vtx"), None);
    }

    #[test]
    fn report_layouts() {
        let fields = |s: &'static str| s.as_bytes().split(|&b| b == b',').collect::<Vec<_>>();
        let r = Report::parse(
            "1",
            fields("imei:1,tracker,0809231929,,F,055403.000,A,2233.1870,S,11354.3067,W,10.00,30.1,-5,1,0,10.5%,0.0%,28"),
        )
        .unwrap();
        let Located::Fix {
            latitude,
            longitude,
            valid,
            speed_knots,
            course,
            altitude,
        } = r.located
        else {
            panic!()
        };
        assert!(latitude < -22.0 && longitude < -113.0 && valid);
        assert_eq!(
            (speed_knots, course, altitude),
            (Some(10.0), Some(30.1), Some(-5.0))
        );
        assert!(r.quirks.is_empty());
        let r = Report::parse(
            "1",
            fields("imei:1,tracker,150420050648,53.0,F,0.0,A,N,5306.64155,E,00700.77848,0.0,,1.0,"),
        )
        .unwrap();
        assert!(matches!(r.located, Located::Fix { latitude, .. } if latitude > 53.0));
        assert_eq!(r.utc, None);
        assert_eq!(r.quirks, [quirk::HEMISPHERE_FIRST]);
        let r = Report::parse(
            "1",
            fields("imei:1,ac alarm,180404174252,,L,,,296a,,51f7,,,"),
        )
        .unwrap();
        assert_eq!(
            r.located,
            Located::Cell {
                lac: 0x296a,
                cell_id: 0x51f7
            }
        );
        let r = Report::parse("1", fields("imei:1,sensor alarm,2208011920,,L,")).unwrap();
        assert_eq!(r.located, Located::Nowhere);
        for bad in [
            "imei:1,tracker,0809231929,,F,055403.000,X,2233.1870,N,11354.3067,E,0.00",
            "imei:1,tracker,0809231929,,F,055403.000,A,2233,N,11354.3067,E,0.00",
            "imei:1,tracker,0809231929,,F,055403.000,A,2233.1870,Q,11354.3067,E,0.00",
        ] {
            assert!(Report::parse("1", fields(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn photo_chunks_carry_their_length() {
        let mut c = vec![0x0c, 0x00, 0x03, 0x00, 1, 2, 3, 0x1d, 0x00];
        assert_eq!(photo_chunk(&c), Ok((12, &[1u8, 2, 3][..])));
        c.push(0);
        assert!(photo_chunk(&c).is_err());
        assert!(photo_chunk(&[1, 0, 0]).is_err());
        assert_eq!(photo_chunk(&[1, 0, 0, 0, 9, 9]), Ok((1, &[][..])));
    }
}
