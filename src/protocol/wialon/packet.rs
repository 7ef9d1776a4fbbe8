//! Wialon IPS text packets: splitting `[2.0;imei]#TYPE#body`, the SD/D record bodies and their
//! reply codes, and rendering records back to text (for tests, tools and the simulator). What a
//! record means as an event is `mapping`'s business.
//!
//! Everything works on bytes: the separators (`#;,:|`) are ASCII, so splitting is safe for
//! UTF-8 and for the single-byte code pages some firmware still uses; only values are decoded.
//!
//! # What real devices send
//!
//! Records are parsed strictly except for quirks that production firmware shows and that have
//! exactly one meaning ([`quirk`]): numbers padded with spaces, numeric parameters with an
//! empty value, empty entries in the parameter list, and coordinates with 60 or more minutes.
//! Each is accepted and reported back ([`parse_record_noting`]), so the session can count it.
//! Anything else malformed is still answered with the spec's error code.

use bytes::Bytes;

use super::crc;
use crate::protocol::civil::{civil_from_secs, days_from_civil};

/// Labels of the device quirks the record parser tolerates (the `kind` label of
/// `avlgate_lenient_input_total`). A fixed set: never derived from input.
pub mod quirk {
    /// A numeric field or value padded with spaces (`" 65"`, `"74      "`): trimmed.
    pub const PADDED_NUMBER: &str = "padded_number";
    /// An integer or double parameter with an empty value (`ign:1:`): the parameter is absent.
    pub const EMPTY_VALUE: &str = "empty_param_value";
    /// An empty entry in the parameter list (a trailing comma, `a:1:1,`): nothing there.
    pub const EMPTY_PARAM: &str = "empty_param";
    /// A coordinate with 60 or more minutes (`5364.0167` = 53° 64.0167′): normalized to
    /// degrees and minutes below 60 (54° 4.0167′), as Traccar reads it.
    pub const COORDINATE_MINUTES: &str = "coordinate_minutes";
}

/// `f` without the spaces around it.
fn trim_spaces(f: &[u8]) -> &[u8] {
    let start = f.iter().take_while(|&&b| b == b' ').count();
    let rest = f.get(start..).unwrap_or_default();
    let end = rest.len() - rest.iter().rev().take_while(|&&b| b == b' ').count();
    rest.get(..end).unwrap_or_default()
}

/// The quirks one record showed, each once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Quirks(Vec<&'static str>);

impl Quirks {
    fn note(&mut self, q: &'static str) {
        if !self.0.contains(&q) {
            self.0.push(q);
        }
    }

    /// `f` without the spaces around it; notes the padding.
    fn trim<'a>(&mut self, f: &'a [u8]) -> &'a [u8] {
        let t = trim_spaces(f);
        if t.len() != f.len() {
            self.note(quirk::PADDED_NUMBER);
        }
        t
    }

    pub fn labels(&self) -> &[&'static str] {
        &self.0
    }

    pub fn into_labels(self) -> Vec<&'static str> {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Protocol version a device speaks: 1.1 packets carry no CRC, 2.0 packets do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    #[default]
    V1,
    V2,
}

/// Longest IMEI / serial number we accept as a device id (the gateway-wide rule).
pub const MAX_ID_LEN: usize = crate::device_id::MAX_LEN;

/// One text packet split into its parts. `text` is `#TYPE#body` (no UDP prefix, no `\r\n`).
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// The UDP form's `[version;]imei` before the first `#`.
    pub prefix: Option<(Version, &'a [u8])>,
    /// Packet type, upper-cased (the spec's own example writes `#l#` for `#I#`).
    pub ty: PacketType,
    pub body: &'a [u8],
    pub text: &'a [u8],
}

/// The packet types a device may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Login,
    ShortData,
    Data,
    Ping,
    Blackbox,
    Message,
    Image,
    TachoInfo,
    TachoBlock,
    /// Anything else (including server-to-device types sent back to us).
    Other,
}

impl PacketType {
    fn from_bytes(ty: &[u8]) -> Self {
        let mut up = [0u8; 3];
        if ty.len() > up.len() {
            return PacketType::Other;
        }
        for (d, s) in up.iter_mut().zip(ty) {
            *d = s.to_ascii_uppercase();
        }
        match up.get(..ty.len()).unwrap_or_default() {
            b"L" => PacketType::Login,
            b"SD" => PacketType::ShortData,
            b"D" => PacketType::Data,
            b"P" => PacketType::Ping,
            b"B" => PacketType::Blackbox,
            b"M" => PacketType::Message,
            b"I" => PacketType::Image,
            b"IT" => PacketType::TachoInfo,
            b"T" => PacketType::TachoBlock,
            _ => PacketType::Other,
        }
    }
}

/// Splits a packet line (terminator already removed). `None` = not a Wialon packet at all.
pub fn split_line(line: &[u8]) -> Option<Line<'_>> {
    let hash = line.iter().position(|&b| b == b'#')?;
    let (head, text) = line.split_at(hash);
    let prefix = if head.is_empty() {
        None
    } else {
        Some(parse_prefix(head)?)
    };
    let rest = text.get(1..)?;
    let end = rest.iter().take(4).position(|&b| b == b'#')?;
    let ty = rest.get(..end)?;
    if ty.is_empty() || !ty.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let body = rest.get(end + 1..)?;
    Some(Line {
        prefix,
        ty: PacketType::from_bytes(ty),
        body,
        text,
    })
}

/// `2.0;imei` or `imei` (the UDP form's device id).
pub fn parse_prefix(head: &[u8]) -> Option<(Version, &[u8])> {
    let (version, id) = match head.iter().position(|&b| b == b';') {
        Some(i) => {
            let (v, id) = head.split_at(i);
            if !is_version(v) {
                return None;
            }
            (Version::V2, id.get(1..)?)
        }
        None => (Version::V1, head),
    };
    valid_id(id).then_some((version, id))
}

/// `2.0` (any `digits.digits`: a future minor version should not lock devices out).
pub fn is_version(v: &[u8]) -> bool {
    let mut parts = v.splitn(2, |&b| b == b'.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or_default();
    !major.is_empty()
        && !minor.is_empty()
        && major.len() <= 3
        && minor.len() <= 3
        && major.iter().chain(minor).all(u8::is_ascii_digit)
        && major != b"1"
}

/// A device id: the gateway-wide rule of [`crate::device_id`] (which also keeps out this
/// protocol's separators `#`, `;`, `|` and `,`).
pub fn valid_id(id: &[u8]) -> bool {
    crate::device_id::is_valid_bytes(id)
}

/// `#TYPE#code\r\n`.
pub fn reply(ty: &str, code: &str) -> Bytes {
    Bytes::from(format!("#{ty}#{code}\r\n"))
}

/// Why a record body was refused, with the spec's reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    Structure,
    Time,
    Coordinates,
    Motion,
    Satellites,
    InputsOutputs,
    Adc,
    Params,
}

impl RecordError {
    /// The code in `#ASD#`/`#AD#` answers.
    pub fn code(self) -> &'static str {
        match self {
            RecordError::Structure => "-1",
            RecordError::Time => "0",
            RecordError::Coordinates => "10",
            RecordError::Motion => "11",
            RecordError::Satellites => "12",
            RecordError::InputsOutputs => "13",
            RecordError::Adc => "14",
            RecordError::Params => "15",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RecordError::Structure => "wrong number of fields",
            RecordError::Time => "bad date or time",
            RecordError::Coordinates => "bad coordinates",
            RecordError::Motion => "bad speed, course or height",
            RecordError::Satellites => "bad satellites or hdop",
            RecordError::InputsOutputs => "bad inputs or outputs",
            RecordError::Adc => "bad adc",
            RecordError::Params => "bad parameters",
        }
    }
}

/// A typed parameter value (`NAME:TYPE:VALUE`).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Double(f64),
    /// Raw bytes: UTF-8 in practice, but kept losslessly when it is not.
    Text(Vec<u8>),
}

/// One SD or D record. `None` = the device sent `NA` (or an empty field).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Seconds since the epoch; `None` when date and time were both `NA` (= "now").
    pub time: Option<i64>,
    /// Signed decimal degrees.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub speed: Option<f64>,
    pub course: Option<f64>,
    pub height: Option<f64>,
    pub satellites: Option<u32>,
    /// The remaining fields exist only in D records.
    pub hdop: Option<f64>,
    pub inputs: Option<u64>,
    pub outputs: Option<u64>,
    /// adc1..adcN; an `NA` inside the list leaves a hole.
    pub adc: Vec<Option<f64>>,
    pub ibutton: Option<Vec<u8>>,
    pub params: Vec<(String, ParamValue)>,
}

/// Fields in an SD body / a D body, without the CRC.
pub const SD_FIELDS: usize = 10;
pub const D_FIELDS: usize = 16;

fn is_na(f: &[u8]) -> bool {
    f.is_empty() || f.eq_ignore_ascii_case(b"NA")
}

fn text(f: &[u8]) -> Option<&str> {
    std::str::from_utf8(f).ok()
}

/// A finite decimal number; `Ok(None)` for NA. `f` is already trimmed.
fn opt_f64(f: &[u8]) -> Result<Option<f64>, ()> {
    if is_na(f) {
        return Ok(None);
    }
    // Rust's float parser also takes "inf", "NaN" and "1e5"; devices only write plain decimals.
    if !f
        .iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'))
    {
        return Err(());
    }
    let v: f64 = text(f).ok_or(())?.parse().map_err(|_| ())?;
    if v.is_finite() {
        Ok(Some(v))
    } else {
        Err(())
    }
}

fn opt_u64(f: &[u8]) -> Result<Option<u64>, ()> {
    if is_na(f) {
        return Ok(None);
    }
    text(f).ok_or(())?.parse::<u64>().map(Some).map_err(|_| ())
}

/// Satellites: an integer, though some firmware writes `4.0`.
fn opt_sats(f: &[u8]) -> Result<Option<u32>, ()> {
    match opt_f64(f)? {
        None => Ok(None),
        Some(v) if (0.0..=1000.0).contains(&v) && v.fract() == 0.0 => Ok(Some(v as u32)),
        Some(_) => Err(()),
    }
}

/// A date or time field that is not a real UTC `DDMMYY` / `HHMMSS` (answer code `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTime;

/// `DDMMYY` + `HHMMSS[.fff]` (UTC) to seconds since the epoch. `Ok(None)`: both NA.
pub fn parse_time(date: &[u8], time: &[u8]) -> Result<Option<i64>, BadTime> {
    parse_time_inner(date, time).map_err(|()| BadTime)
}

fn parse_time_inner(date: &[u8], time: &[u8]) -> Result<Option<i64>, ()> {
    match (is_na(date), is_na(time)) {
        (true, true) => return Ok(None),
        (false, false) => {}
        _ => return Err(()),
    }
    let digits = |s: &[u8]| -> Result<[u32; 3], ()> {
        if s.len() != 6 || !s.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = |i: usize| -> u32 {
            s.get(i..i + 2)
                .map(|p| p.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0')))
                .unwrap_or_default()
        };
        Ok([n(0), n(2), n(4)])
    };
    // Some firmware appends fractional seconds: dropped (records have second resolution).
    let time = match time.iter().position(|&b| b == b'.') {
        Some(i)
            if time
                .get(i + 1..)
                .is_some_and(|f| f.iter().all(u8::is_ascii_digit)) =>
        {
            time.get(..i).ok_or(())?
        }
        Some(_) => return Err(()),
        None => time,
    };
    let [day, month, yy] = digits(date)?;
    let [h, m, s] = digits(time)?;
    let year = 2000 + i64::from(yy);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(());
    }
    if h > 23 || m > 59 || s > 59 {
        return Err(());
    }
    let days = days_from_civil(year, month, day);
    Ok(Some(
        days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s),
    ))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `DDMM.MMMM;N` / `DDDMM.MMMM;E` to signed degrees. `Ok(None)`: `NA;NA`. Minutes of 60 or
/// more are carried into the degrees ([`quirk::COORDINATE_MINUTES`]); the result must still be
/// within `max_deg`.
fn parse_coord(value: &[u8], hemi: &[u8], max_deg: f64, q: &mut Quirks) -> Result<Option<f64>, ()> {
    let value = q.trim(value);
    let hemi = q.trim(hemi);
    if is_na(value) && is_na(hemi) {
        return Ok(None);
    }
    let raw = opt_f64(value)?.ok_or(())?;
    if raw < 0.0 {
        // The hemisphere carries the sign; a negative value is ambiguous.
        return Err(());
    }
    let deg = (raw / 100.0).trunc();
    let min = raw - deg * 100.0;
    if min >= 60.0 {
        q.note(quirk::COORDINATE_MINUTES);
    }
    let v = deg + min / 60.0;
    if v > max_deg {
        return Err(());
    }
    let sign = match hemi {
        [b'N' | b'n' | b'E' | b'e'] => 1.0,
        [b'S' | b's' | b'W' | b'w'] => -1.0,
        _ => return Err(()),
    };
    Ok(Some(sign * v))
}

/// Parses an SD (10 fields) or D (16 fields) body whose CRC, if any, was already removed.
/// Quirks are tolerated as with [`parse_record_noting`] but not reported.
pub fn parse_record(fields: &[&[u8]]) -> Result<Record, RecordError> {
    parse_record_noting(fields, &mut Quirks::default())
}

/// [`parse_record`], noting in `q` the device quirks it tolerated.
pub fn parse_record_noting(fields: &[&[u8]], q: &mut Quirks) -> Result<Record, RecordError> {
    use RecordError as E;
    let full = match fields.len() {
        SD_FIELDS => false,
        D_FIELDS => true,
        _ => return Err(E::Structure),
    };
    let raw = |i: usize| fields.get(i).copied().unwrap_or_default();
    let date = q.trim(raw(0));
    let time = q.trim(raw(1));
    let mut r = Record {
        time: parse_time(date, time).map_err(|_| E::Time)?,
        ..Default::default()
    };
    let lat = parse_coord(raw(2), raw(3), 90.0, q).map_err(|_| E::Coordinates)?;
    let lon = parse_coord(raw(4), raw(5), 180.0, q).map_err(|_| E::Coordinates)?;
    match (lat, lon) {
        (Some(_), Some(_)) | (None, None) => {}
        _ => return Err(E::Coordinates),
    }
    r.latitude = lat;
    r.longitude = lon;
    let mut num = |i: usize| opt_f64(q.trim(raw(i)));
    r.speed = num(6).map_err(|_| E::Motion)?;
    r.course = num(7).map_err(|_| E::Motion)?;
    r.height = num(8).map_err(|_| E::Motion)?;
    if r.speed.is_some_and(|v| v < 0.0) || r.course.is_some_and(|v| !(0.0..=360.0).contains(&v)) {
        return Err(E::Motion);
    }
    r.satellites = opt_sats(q.trim(raw(9))).map_err(|_| E::Satellites)?;
    if !full {
        return Ok(r);
    }
    r.hdop = opt_f64(q.trim(raw(10))).map_err(|_| E::Satellites)?;
    if r.hdop.is_some_and(|v| v < 0.0) {
        return Err(E::Satellites);
    }
    r.inputs = opt_u64(q.trim(raw(11))).map_err(|_| E::InputsOutputs)?;
    r.outputs = opt_u64(q.trim(raw(12))).map_err(|_| E::InputsOutputs)?;
    r.adc = parse_adc(raw(13), q).map_err(|_| E::Adc)?;
    // A driver key is a string of the device's choosing: kept exactly, spaces and all.
    r.ibutton = (!is_na(raw(14))).then(|| raw(14).to_vec());
    r.params = parse_params(raw(15), q).map_err(|_| E::Params)?;
    Ok(r)
}

fn parse_adc(f: &[u8], q: &mut Quirks) -> Result<Vec<Option<f64>>, ()> {
    let f = q.trim(f);
    if is_na(f) {
        return Ok(Vec::new());
    }
    f.split(|&b| b == b',')
        .map(|v| opt_f64(q.trim(v)))
        .collect()
}

/// `NAME:TYPE:VALUE,...`. Names and string values are kept exactly as sent; integer and double
/// values may be padded, and an empty one means the device had no value (the parameter is left
/// out, as an `NA` field would be).
fn parse_params(f: &[u8], q: &mut Quirks) -> Result<Vec<(String, ParamValue)>, ()> {
    // The list as a whole is not a number: spaces around it (`NA `, a last string value
    // ending in a space) are no padding.
    if is_na(trim_spaces(f)) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for p in f.split(|&b| b == b',') {
        if trim_spaces(p).is_empty() {
            q.note(quirk::EMPTY_PARAM);
            continue;
        }
        let mut parts = p.splitn(3, |&b| b == b':');
        let name = parts.next().unwrap_or_default();
        let ty = q.trim(parts.next().ok_or(())?);
        let value = parts.next().ok_or(())?;
        if name.is_empty() {
            return Err(());
        }
        let value = match ty {
            b"1" | b"2" => {
                let v = q.trim(value);
                if v.is_empty() {
                    q.note(quirk::EMPTY_VALUE);
                    continue;
                }
                if ty == b"1" {
                    ParamValue::Int(text(v).ok_or(())?.parse().map_err(|_| ())?)
                } else {
                    ParamValue::Double(opt_f64(v)?.ok_or(())?)
                }
            }
            b"3" => ParamValue::Text(value.to_vec()),
            _ => return Err(()),
        };
        // Keys must be strings; a non-UTF-8 name is kept readable, not byte-exact.
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Ok(out)
}

/// Splits `body` into its `;` fields and, when a CRC is present, checks it over everything up
/// to and including the last `;`. `with_crc`: the CRC field is there (decided by the caller
/// from the field count or the session's version).
pub fn split_checked(body: &[u8], with_crc: bool) -> (Vec<&[u8]>, Option<bool>) {
    let mut fields: Vec<&[u8]> = body.split(|&b| b == b';').collect();
    if !with_crc {
        return (fields, None);
    }
    let crc_field = fields.pop().unwrap_or_default();
    let covered = body.len().saturating_sub(crc_field.len());
    let data = body.get(..covered).unwrap_or_default();
    (fields, Some(crc::check(data, crc_field).unwrap_or(false)))
}

/// Renders a record body (SD when `full` is false). Numbers use Rust's shortest round-trip
/// form, so parsing the output gives the same values back (coordinates to 1e-9 degrees).
pub fn render_record(r: &Record, full: bool) -> String {
    fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
        v.as_ref()
            .map_or_else(|| "NA".to_string(), |v| v.to_string())
    }
    fn coord(v: Option<f64>, pos: char, neg: char) -> String {
        match v {
            None => "NA;NA".into(),
            Some(v) => {
                let a = v.abs();
                let deg = a.trunc();
                let ddmm = deg * 100.0 + (a - deg) * 60.0;
                format!("{ddmm:.9};{}", if v < 0.0 { neg } else { pos })
            }
        }
    }
    let (date, time) = match r.time {
        None => ("NA".to_string(), "NA".to_string()),
        Some(t) => {
            let (y, m, d, hh, mm, ss) = civil_from_secs(t);
            (
                format!("{d:02}{m:02}{:02}", y.rem_euclid(100)),
                format!("{hh:02}{mm:02}{ss:02}"),
            )
        }
    };
    let mut s = format!(
        "{date};{time};{};{};{};{};{};{}",
        coord(r.latitude, 'N', 'S'),
        coord(r.longitude, 'E', 'W'),
        opt(&r.speed),
        opt(&r.course),
        opt(&r.height),
        opt(&r.satellites),
    );
    if full {
        let adc: Vec<String> = r.adc.iter().map(opt).collect();
        let params: Vec<String> = r
            .params
            .iter()
            .map(|(n, v)| match v {
                ParamValue::Int(i) => format!("{n}:1:{i}"),
                ParamValue::Double(d) => format!("{n}:2:{d}"),
                ParamValue::Text(t) => format!("{n}:3:{}", String::from_utf8_lossy(t)),
            })
            .collect();
        s.push_str(&format!(
            ";{};{};{};{};{};{}",
            opt(&r.hdop),
            opt(&r.inputs),
            opt(&r.outputs),
            adc.join(","),
            r.ibutton
                .as_deref()
                .map_or_else(|| "NA".into(), |b| String::from_utf8_lossy(b).into_owned()),
            params.join(","),
        ));
    }
    s
}

/// Appends `;CRC` (2.0) to a body that ends in its last field.
pub fn with_crc(body: &str) -> String {
    let covered = format!("{body};");
    let c = crc::render(covered.as_bytes());
    format!("{covered}{c}")
}

/// `yyyymmdd_hhmmss` (UTC) for ddd-file names.
pub fn format_file_time(t: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil_from_secs(t);
    format!("{y:04}{m:02}{d:02}_{hh:02}{mm:02}{ss:02}")
}
