//! The @Track text form: `+RESP:GT<type>,<protocol version>,<IMEI>,<device name>,…,<send
//! time>,<count>` (and `+BUFF:` for the same content re-sent from the device's buffer,
//! `+ACK:GT<cmd>` for command answers and the `+ACK:GTHBD` heartbeat).
//!
//! # How a report is read
//!
//! The layout of a report is a function of its type *and* of the device's model and firmware:
//! the same `GTFRI` ends differently on a GV300, a GL300, a GL500 and a GT501, and a
//! `<Position Append Mask>` adds fields on newer firmware. The decoder therefore reads a
//! report from both ends:
//!
//! 1. **The ends are fixed**: header, protocol version, device id, device name at the front;
//!    send time and count number at the back (the GT300 dialect puts the count before a
//!    trailing version and has no version or device name up front).
//! 2. **The positions are found by their shape**: a position block is `<GPS accuracy>,
//!    <speed>,<azimuth>,<altitude>,<longitude>,<latitude>,<GPS UTC time>` (longitude before
//!    latitude), then optionally a Wi-Fi list, the serving cell `<MCC>,<MNC>,<LAC>,<cell id>`
//!    and one model-dependent field (reserved `00`, the position append mask with the fields it
//!    announces, a per-point odometer on GL300-class firmware, CSQ RSSI on GL5xx). Reports
//!    with a `<Number>` field (the `GTFRI` family) are read as that many consecutive blocks,
//!    each field checked against its format, which also finds blocks without a fix; other
//!    types have their block at a fixed place; unknown types are searched for
//!    longitude/latitude/time triples.
//! 3. **The fields around the blocks are named by the model's family** ([`Family`]): the head
//!    (external power, report id/type, ERI mask) and the tail (mileage, hour meter, analog
//!    inputs, battery, device status, and `GTERI`'s peripheral sections by its mask).
//!
//! Nothing is lost: every field the decoder cannot name is kept in `raw` under its place,
//! `field_<i>` (its comma index in the message) before the positions and `tail_<k>` (k-th
//! field after the last position) after them. Empty fields are values the device did not
//! send and are not kept.

use crate::event::raw;
use crate::proto::{CellTower, Position, RawValue, WifiAccessPoint};

use super::mapping::name;
use super::models::{self, Family, Model};
use super::report::{typed, Ack, Class, Record, Report, Ty};

/// Why a text message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("not an @Track text message: {0}")]
    Malformed(&'static str),
}

/// Most fields a message may have (the cap of a frame bounds it too; this keeps a hostile
/// message of commas from making a large index vector).
const MAX_FIELDS: usize = 4096;

/// Decodes one text message (without its `$`).
pub fn decode(text: &str) -> Result<Report, TextError> {
    let fields: Vec<&str> = text.splitn(MAX_FIELDS, ',').collect();
    let head = fields.first().copied().unwrap_or_default();
    let (prefix, word) = head
        .split_once(':')
        .ok_or(TextError::Malformed("no `+XXX:` header"))?;
    match prefix {
        "+ACK" | "+NACK" => ack(text, &fields, prefix == "+NACK", word),
        "+RESP" | "+BUFF" => {
            let ty = word
                .strip_prefix("GT")
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()))
                .ok_or(TextError::Malformed("report type is not GT<type>"))?;
            report(&fields, ty)
        }
        _ => Err(TextError::Malformed("unknown header")),
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_count(s: &str) -> bool {
    s.len() == 4 && is_hex(s)
}

fn is_time(s: &str) -> bool {
    s.len() == 14 && is_digits(s)
}

/// `YYYYMMDDHHMMSS` (UTC) → seconds since the epoch; `None` when out of range.
pub fn parse_time(s: &str) -> Option<i64> {
    if !is_time(s) {
        return None;
    }
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<u32>().ok();
    let (y, mo, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (h, mi, se) = (n(8, 10)?, n(10, 12)?, n(12, 14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = crate::protocol::civil::days_from_civil(i64::from(y), mo, d);
    Some(days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se))
}

/// Where the fixed back of a message is.
struct Ends {
    /// First index past the content (the send time, count or trailing version).
    content_end: usize,
    send_time: Option<usize>,
    count: Option<usize>,
    /// The GT300 dialect's trailing protocol version.
    version: Option<usize>,
}

fn ends(f: &[&str], gt300: bool) -> Ends {
    let n = f.len();
    let at = |k: usize| n.checked_sub(k).and_then(|i| f.get(i).map(|s| (i, *s)));
    if gt300 {
        // `…,<send time>,<count>,<version>` (no `$` on the wire), or the standard back.
        if let (Some((vi, v)), Some((ci, c))) = (at(1), at(2)) {
            if v.len() == 10 && is_hex(v) && is_count(c) {
                let send_time = at(3).filter(|(_, t)| is_time(t)).map(|(i, _)| i);
                return Ends {
                    content_end: send_time.unwrap_or(ci),
                    send_time,
                    count: Some(ci),
                    version: Some(vi),
                };
            }
        }
    }
    let count = at(1).filter(|(_, c)| is_count(c)).map(|(i, _)| i);
    let send_time = match count {
        Some(_) => at(2).filter(|(_, t)| is_time(t)).map(|(i, _)| i),
        None => at(1).filter(|(_, t)| is_time(t)).map(|(i, _)| i),
    };
    Ends {
        content_end: send_time.or(count).unwrap_or(n),
        send_time,
        count,
        version: None,
    }
}

/// The message being decoded.
struct Msg<'a> {
    f: &'a [&'a str],
    ty: &'a str,
    model: Option<&'static Model>,
    /// First field after the device name (and a GV500's VIN).
    first: usize,
    /// One past the last content field.
    end: usize,
    /// Fields already kept somewhere.
    used: Vec<bool>,
    /// First field after the last position block, when there are blocks.
    blocks_end: Option<usize>,
    shared: Vec<RawValue>,
    lenient: Vec<&'static str>,
}

impl<'a> Msg<'a> {
    fn get(&self, i: usize) -> Option<&'a str> {
        (i < self.end).then(|| self.f.get(i).copied()).flatten()
    }

    fn family(&self) -> Option<Family> {
        self.model.map(|m| m.family)
    }

    fn mark(&mut self, i: usize) {
        if let Some(u) = self.used.get_mut(i) {
            *u = true;
        }
    }

    /// Keeps field `i` as a message-level value called `name`.
    fn put(&mut self, i: usize, name: &str, ty: Ty) -> Option<&'a str> {
        let v = self.get(i)?;
        self.mark(i);
        if let Some(r) = typed(name, v, ty) {
            self.shared.push(r);
        }
        Some(v)
    }

    /// A type-scoped name (`geo_report_id_type`): the report id/type field means something
    /// different per message type, so each type's has its own name (and its own rules).
    fn scoped(&self, what: &str) -> String {
        format!("{}_{what}", self.ty.to_ascii_lowercase())
    }

    /// Every field not kept yet, under its place.
    fn keep_rest(&mut self) {
        for i in 1..self.end.min(self.f.len()) {
            if self.used.get(i).copied().unwrap_or(true) {
                continue;
            }
            let v = self.f.get(i).copied().unwrap_or_default();
            if v.is_empty() {
                continue;
            }
            let n = match self.blocks_end {
                Some(b) if i >= b => format!("{}{}", name::TAIL_PREFIX, i - b + 1),
                _ => format!("{}{i}", name::FIELD_PREFIX),
            };
            self.shared.push(raw::string(n, v));
        }
    }
}

/// A cell field group's verdict.
enum Cell {
    Present(CellTower),
    /// All four empty.
    Empty,
    /// Not a cell (the fields are something else).
    Not,
}

fn cell(f: &[&str]) -> Cell {
    let [mcc, mnc, lac, cid] = f else {
        return Cell::Not;
    };
    if [mcc, mnc, lac, cid].iter().all(|s| s.is_empty()) {
        return Cell::Empty;
    }
    let num = |s: &str| s.len() <= 4 && is_digits(s);
    let hex8 = |s: &str| s.len() <= 8 && is_hex(s);
    if !(num(mcc) && num(mnc) && hex8(lac) && hex8(cid)) {
        return Cell::Not;
    }
    match (
        mcc.parse::<u32>(),
        mnc.parse::<u32>(),
        u64::from_str_radix(lac, 16),
        u64::from_str_radix(cid, 16),
    ) {
        (Ok(mcc), Ok(mnc), Ok(lac), Ok(cell_id)) => Cell::Present(CellTower {
            mcc,
            mnc,
            lac,
            cell_id,
            signal: None,
        }),
        _ => Cell::Not,
    }
}

fn matches_num(
    s: &str,
    int_max: usize,
    frac: Option<usize>,
    signed: bool,
    need_frac: bool,
) -> bool {
    let s = if signed {
        s.strip_prefix('-').unwrap_or(s)
    } else {
        s
    };
    let (int, fr) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || int.len() > int_max || !is_digits(int) {
        return false;
    }
    match (fr, frac) {
        (None, _) => !need_frac,
        (Some(f), Some(max)) => !f.is_empty() && f.len() <= max && is_digits(f),
        (Some(_), None) => false,
    }
}

fn is_lon(s: &str) -> bool {
    matches_num(s, 3, Some(6), true, true)
        && s.split_once('.').is_some_and(|(_, f)| f.len() == 6)
        && s.parse::<f64>().is_ok_and(|v| v.abs() <= 180.0)
}

fn is_lat(s: &str) -> bool {
    matches_num(s, 2, Some(6), true, true)
        && s.split_once('.').is_some_and(|(_, f)| f.len() == 6)
        && s.parse::<f64>().is_ok_and(|v| v.abs() <= 90.0)
}

/// A parsed position block.
struct Block {
    rec: Record,
    /// One past its last field.
    end: usize,
}

fn opt<F: Fn(&str) -> bool>(s: &str, f: F) -> bool {
    s.is_empty() || f(s)
}

/// Reads the position block starting at `b` (its `<GPS accuracy>`); `None` when the fields
/// there are not one. `with_cell`: the block carries the serving cell and the trailing
/// model-dependent field; a block whose cell fields are not a cell ends after its time,
/// unless `strict`, when it is no block.
fn block(m: &mut Msg<'_>, b: usize, with_cell: bool) -> Option<Block> {
    block_of(m, b, with_cell, false)
}

fn block_of(m: &mut Msg<'_>, b: usize, with_cell: bool, strict: bool) -> Option<Block> {
    let g = |i: usize| m.get(b + i);
    let (acc, speed, az, alt, lon, lat, time) = (g(0)?, g(1)?, g(2)?, g(3)?, g(4)?, g(5)?, g(6)?);
    // Some firmware writes `0,0` for the coordinates of a record without any fix.
    let zeros = lon == "0" && lat == "0";
    let (lon, lat) = if zeros { ("", "") } else { (lon, lat) };
    let ok = opt(acc, |s| matches_num(s, 2, Some(1), false, false))
        && opt(speed, |s| matches_num(s, 4, Some(2), false, true))
        && opt(az, |s| matches_num(s, 3, Some(1), false, false))
        && opt(alt, |s| matches_num(s, 5, Some(1), true, false))
        && opt(lon, is_lon)
        && opt(lat, is_lat)
        && opt(time, is_time)
        && lon.is_empty() == lat.is_empty()
        // No position with a time and a non-zero accuracy is a torn record.
        && (!lon.is_empty() || time.is_empty() || acc.is_empty() || acc == "0");
    if !ok {
        return None;
    }
    let mut rec = Record::default();
    let mut i = b + 7;
    let mut wifi = Vec::new();
    // A Wi-Fi list after the time (GT501 and others): <count>, then per access point the
    // MAC (12 hex digits), RSSI and three reserved fields.
    if let (Some(c), Some(mac)) = (m.get(i), m.get(i + 1)) {
        if c.len() <= 2 && is_digits(c) && mac.len() == 12 && is_hex(mac) {
            let n: usize = c.parse().unwrap_or(0);
            let mut j = i + 1;
            for _ in 0..n {
                let (mac, rssi) = (m.get(j)?, m.get(j + 1)?);
                if !(mac.len() == 12 && is_hex(mac)) {
                    return None;
                }
                let mut pretty = String::with_capacity(17);
                for (k, ch) in mac.chars().enumerate() {
                    if k > 0 && k % 2 == 0 {
                        pretty.push(':');
                    }
                    pretty.push(ch.to_ascii_lowercase());
                }
                wifi.push(WifiAccessPoint {
                    mac: pretty,
                    signal_dbm: rssi.parse().ok(),
                });
                // The three reserved fields may be cut at the end of the message.
                j += 5;
            }
            for k in i..j.min(m.end) {
                m.mark(k);
            }
            rec.raw.extend(typed(name::WIFI_COUNT, c, Ty::Dec));
            i = j.min(m.end);
        }
    }
    let mut cell_tower = None;
    let mut has_cell = false;
    if with_cell {
        let group: Vec<&str> = (0..4).filter_map(|k| m.get(i + k)).collect();
        match cell(&group) {
            Cell::Present(c) => {
                cell_tower = Some(c);
                has_cell = true;
            }
            Cell::Empty => has_cell = true,
            Cell::Not if strict => return None,
            Cell::Not => {}
        }
    }
    for k in b..b + 7 {
        m.mark(k);
    }
    let accuracy = acc.parse::<f64>().ok();
    if !acc.is_empty() {
        if let Some(r) = typed(name::GPS_ACCURACY, acc, Ty::Float) {
            rec.raw.push(r);
        }
    }
    let num = |s: &str| s.parse::<f64>().ok();
    if !lon.is_empty() {
        rec.position = Some(Position {
            latitude: num(lat).unwrap_or_default(),
            longitude: num(lon).unwrap_or_default(),
            altitude: num(alt),
            speed: num(speed),
            course: num(az),
            satellites: None,
            hdop: None,
            // `0` is the documented "no fix now: this is the last known position".
            valid: accuracy.is_none_or(|a| a > 0.0),
            pdop: None,
            accuracy_meters: None,
        });
        rec.fix_time = parse_time(time);
    } else {
        for (v, n) in [
            (speed, name::SPEED_KMH),
            (az, name::AZIMUTH),
            (alt, name::ALTITUDE_M),
        ] {
            if let Some(r) = typed(n, v, Ty::Float) {
                rec.raw.push(r);
            }
        }
    }
    if !time.is_empty() && rec.fix_time.is_none() {
        rec.raw.push(raw::string(name::GPS_UTC_TIME, time));
    }
    if zeros {
        rec.raw.push(raw::string(name::LONGITUDE, "0"));
        rec.raw.push(raw::string(name::LATITUDE, "0"));
    }
    rec.wifi = wifi;
    if !has_cell {
        return Some(Block { rec, end: i });
    }
    for k in i..i + 4 {
        m.mark(k);
    }
    rec.cells.extend(cell_tower);
    i += 4;
    // The field after the cell.
    if let Some(v) = m.get(i) {
        m.mark(i);
        i += 1;
        i = after_cell(m, &mut rec, v, i);
    }
    Some(Block { rec, end: i })
}

/// The model-dependent field after a block's cell (`v`, read; the next field is `i`), and
/// the fields it announces. Returns the index after them.
fn after_cell(m: &mut Msg<'_>, rec: &mut Record, v: &str, mut i: usize) -> usize {
    if v.is_empty() {
        return i;
    }
    if matches!(m.family(), Some(Family::Gl5 | Family::Gt501)) && is_digits(v) {
        rec.raw.extend(typed(name::CSQ_RSSI, v, Ty::Dec));
        return i;
    }
    if v.contains('.') {
        // GL300-class firmware: the odometer, repeated per point.
        rec.raw.extend(typed(name::ODO_MILEAGE_KM, v, Ty::Float));
        return i;
    }
    // Personal trackers' firmware has no append mask: a reserved field.
    if v.len() == 2 && is_hex(v) && m.family() != Some(Family::Personal) {
        let mask = u8::from_str_radix(v, 16).unwrap_or(0);
        rec.raw
            .extend(typed(name::POSITION_APPEND_MASK, v, Ty::Hex));
        let cv200 = m.model.is_some_and(Model::is_cv200);
        // Bits whose fields are known; anything else leaves the rest unnamed (the field
        // count of an unknown bit is unknown).
        let known: u8 = if cv200 { 0b0000_0101 } else { 0b0001_0011 };
        if mask & !known != 0 {
            m.lenient.push(super::LENIENT_APPEND_MASK);
            return i;
        }
        for bit in 0..8u8 {
            if mask & (1 << bit) == 0 {
                continue;
            }
            let Some(f) = m.get(i) else { break };
            m.mark(i);
            i += 1;
            match (cv200, bit) {
                (false, 0) | (true, 2) => match (f.parse::<u32>(), rec.position.as_mut()) {
                    (Ok(n), Some(p)) => p.satellites = Some(n),
                    _ => rec.raw.extend(typed(name::SATELLITES, f, Ty::Dec)),
                },
                (true, 0) => rec.raw.extend(typed(name::SATELLITES_IN_VIEW, f, Ty::Dec)),
                (_, 1) => rec.raw.extend(typed(name::GNSS_TRIGGER_TYPE, f, Ty::Dec)),
                _ => rec.raw.extend(typed(name::GNSS_JAMMING_STATE, f, Ty::Dec)),
            }
        }
        return i;
    }
    rec.raw.push(raw::string(name::POSITION_RESERVED, v));
    i
}

/// `n` consecutive blocks from `start`; `None` unless all of them read.
fn blocks(m: &mut Msg<'_>, start: usize, n: usize, strict: bool) -> Option<Vec<Block>> {
    let used = m.used.clone();
    let lenient = m.lenient.len();
    let mut out = Vec::with_capacity(n.min(15));
    let mut at = start;
    for _ in 0..n {
        match block_of(m, at, true, strict) {
            Some(b) => {
                at = b.end;
                out.push(b);
            }
            None => {
                m.used = used;
                m.lenient.truncate(lenient);
                return None;
            }
        }
    }
    Some(out)
}

/// Blocks found by their longitude/latitude/time triple, for types without a known layout.
fn anchored(m: &mut Msg<'_>, from: usize) -> Vec<Block> {
    let mut out = Vec::new();
    let mut i = from;
    while i + 2 < m.end {
        let triple = m.get(i).is_some_and(is_lon)
            && m.get(i + 1).is_some_and(is_lat)
            && m.get(i + 2).is_some_and(is_time);
        if triple && i >= from + 4 {
            if let Some(b) = block(m, i - 4, true) {
                i = b.end;
                out.push(b);
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The decoded records of `blocks`, or one record without a position.
fn records(blocks: Vec<Block>) -> Vec<Record> {
    if blocks.is_empty() {
        return vec![Record::default()];
    }
    blocks.into_iter().map(|b| b.rec).collect()
}

/// Report types whose layout is the generic location report: `<reserved or external
/// power>,<report id/type>,<number>,{block}×number,…` (and `GTFRI`, which has the same front).
const NUMBERED: &[&str] = &[
    "FRI", "GEO", "RTL", "DOG", "SOS", "SPD", "DIS", "IOB", "PNL", "NMR", "IGL", "VGL", "HBM",
    "TOW", "EPS", "GES", "GIN", "GOT", "TMP", "AIS", "IDN", "IDF", "HBE", "RMD", "CLT", "PHL",
    "STP", "LSP", "FLA", "SSR", "GPJ", "ERI",
];

fn report(fields: &[&str], ty: &str) -> Result<Report, TextError> {
    let f1 = fields.get(1).copied().unwrap_or_default();
    // The GT300 dialect has no protocol version up front: the IMEI is field 1.
    let gt300 = f1.len() == 15 && is_digits(f1);
    let (id_at, version) = if gt300 { (1, None) } else { (2, Some(f1)) };
    let id = fields
        .get(id_at)
        .copied()
        .filter(|s| crate::device_id::is_valid(s))
        .ok_or(TextError::Malformed("no device id"))?;
    let e = ends(fields, gt300);
    let mut e = e;
    if gt300 && e.version.is_none() {
        // The 2017 GT-series form: `…,<version>,<send time>,<count>$`.
        if let Some(i) = e.content_end.checked_sub(1) {
            if fields.get(i).is_some_and(|v| v.len() == 10 && is_hex(v)) {
                e.version = Some(i);
                e.content_end = i;
            }
        }
    }
    let version = version.or_else(|| e.version.and_then(|i| fields.get(i).copied()));
    let model = version.and_then(models::from_version);
    let mut first = if gt300 { 2 } else { 4 };
    let has_vin = model.is_some_and(Model::has_vin);
    let mut m = Msg {
        f: fields,
        ty,
        model,
        first,
        end: e.content_end,
        used: vec![false; fields.len()],
        blocks_end: None,
        shared: Vec::new(),
        lenient: Vec::new(),
    };
    for i in [0, id_at] {
        m.mark(i);
    }
    m.shared.push(raw::string(name::HEADER, fields[0]));
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        m.shared.push(raw::string(name::PROTOCOL_VERSION, v));
    }
    if !gt300 {
        m.mark(1);
        if has_vin {
            m.put(3, name::VIN, Ty::Str);
            m.put(4, name::DEVICE_NAME, Ty::Str);
            first = 5;
        } else {
            m.put(3, name::DEVICE_NAME, Ty::Str);
        }
        m.first = first;
    }
    let recs = match ty {
        "INF" => inf(&mut m),
        "VER" => ver(&mut m),
        "GSM" => gsm(&mut m),
        "WIF" => wif(&mut m),
        "LBS" => lbs(&mut m),
        "CAN" => can_report(&mut m),
        "OBD" => obd(&mut m),
        "IGN" | "IGF" | "VGN" | "VGF" => ign(&mut m),
        "DAT" => fixed(
            &mut m,
            &[name::DAT_REPORT_TYPE, "", "", name::DATA],
            &[Ty::Dec, Ty::Str, Ty::Str, Ty::Str],
        ),
        "DTT" => dtt(&mut m),
        "DAR" => fixed(
            &mut m,
            &[name::WARNING_TYPE, name::FATIGUE_DEGREE, "", ""],
            &[Ty::Dec, Ty::Dec, Ty::Str, Ty::Str],
        ),
        "BAA" => accessory(&mut m, true),
        "BID" => accessory(&mut m, false),
        "LSW" | "TSW" => fixed(
            &mut m,
            &[name::SWITCH_TYPE, name::SWITCH_STATE],
            &[Ty::Dec, Ty::Dec],
        ),
        "IDA" => ida(&mut m),
        "STT" => fixed(&mut m, &[name::MOTION_STATUS], &[Ty::Hex]),
        "BPL" => fixed(&mut m, &[name::BACKUP_BATTERY_VOLTAGE], &[Ty::Float]),
        "TEM" => fixed(
            &mut m,
            &[name::TEMPERATURE_ALARM_TYPE, name::DEVICE_TEMPERATURE],
            &[Ty::Dec, Ty::Float],
        ),
        "JDS" => fixed(&mut m, &[name::JAMMING_STATUS], &[Ty::Dec]),
        "GCR" => fixed(
            &mut m,
            &[name::GEO_MODE, name::GEO_RADIUS, name::GEO_CHECK_INTERVAL],
            &[Ty::Dec, Ty::Dec, Ty::Dec],
        ),
        "LBC" => fixed(&mut m, &[name::CALL_NUMBER], &[Ty::Str]),
        "JDR" | "MPN" | "MPF" | "EPN" | "EPF" | "BTC" | "STC" | "CRA" | "ANT" => {
            fixed(&mut m, &[], &[])
        }
        "STR" | "CTN" | "LSA" if m.family() == Some(Family::Gl5) => gl5_state(&mut m),
        "PNA" | "PFA" | "PDP" => Vec::new(),
        _ if NUMBERED.contains(&ty) => numbered(&mut m).unwrap_or_else(|| generic(&mut m)),
        _ => numbered(&mut m).unwrap_or_else(|| generic(&mut m)),
    };
    let mut rep = Report::new(Class::Report, ty);
    rep.device_id = Some(id.to_string());
    rep.model = model;
    rep.records = if recs.is_empty() {
        vec![Record::default()]
    } else {
        recs
    };
    m.keep_rest();
    let mut shared = std::mem::take(&mut m.shared);
    if let Some(i) = e.send_time {
        let t = fields[i];
        shared.push(raw::string(name::SEND_TIME, t));
        rep.send_time = parse_time(t);
    }
    if let Some(i) = e.count {
        let c = fields[i];
        shared.push(raw::string(name::COUNT_NUMBER, c));
        rep.ack = Ack::Count(c.to_string());
    }
    rep.shared = shared;
    rep.lenient = m.lenient;
    Ok(rep)
}

/// Types with `len(names)` known fields after the device name, then one position block.
/// An empty name keeps that field under its place.
fn fixed(m: &mut Msg<'_>, names: &[&str], tys: &[Ty]) -> Vec<Record> {
    let first = m.first;
    for (k, (n, ty)) in names.iter().zip(tys).enumerate() {
        if !n.is_empty() {
            m.put(first + k, n, *ty);
        }
    }
    let at = first + names.len();
    let found = block(m, at, true)
        .map(|b| vec![b])
        .unwrap_or_else(|| anchored(m, at));
    finish_blocks(m, found, TailKind::Plain)
}

/// How the fields after the blocks are named.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TailKind {
    /// Fixed / extended reports (`GTFRI`, `GTERI`): the family's full tail.
    Periodic,
    /// Event reports of the generic location layout: a mileage (vehicles) or battery
    /// (personal trackers).
    Plain,
    /// Nothing known after the blocks.
    None,
}

fn finish_blocks(m: &mut Msg<'_>, found: Vec<Block>, tail: TailKind) -> Vec<Record> {
    let end = found.last().map(|b| b.end);
    if let Some(e) = end {
        m.blocks_end = Some(e);
        match tail {
            TailKind::Periodic => periodic_tail(m, e),
            TailKind::Plain => plain_tail(m, e),
            TailKind::None => {}
        }
    }
    records(found)
}

/// The generic location layout: finds `<Number>` and its blocks.
fn numbered(m: &mut Msg<'_>) -> Option<Vec<Record>> {
    let first = m.first;
    let eri = m.ty == "ERI";
    // Blocks with a well-formed cell first: a looser reading could take a cell-less shape
    // for a block that has its cell further on.
    for strict in [true, false] {
        if let Some(r) = numbered_pass(m, first, eri, strict) {
            return Some(r);
        }
    }
    None
}

fn numbered_pass(m: &mut Msg<'_>, first: usize, eri: bool, strict: bool) -> Option<Vec<Record>> {
    for n_at in first..=(first + 5).min(m.end) {
        let Some(n) = m.get(n_at).filter(|s| s.len() <= 2 && is_digits(s)) else {
            continue;
        };
        let n: usize = n.parse().unwrap_or(0);
        if n == 0 || n > 15 {
            continue;
        }
        if eri && !m.get(first).is_some_and(|s| s.len() == 8 && is_hex(s)) {
            return None;
        }
        let Some(found) = blocks(m, n_at + 1, n, strict) else {
            continue;
        };
        m.put(n_at, name::NUMBER, Ty::Dec);
        head(m, first, n_at);
        let tail = if matches!(m.ty, "FRI" | "ERI") {
            TailKind::Periodic
        } else {
            TailKind::Plain
        };
        return Some(finish_blocks(m, found, tail));
    }
    None
}

/// Names the fields between the device name and `<Number>`.
fn head(m: &mut Msg<'_>, first: usize, n_at: usize) {
    let mut at = first;
    if m.ty == "ERI" {
        m.put(at, name::ERI_MASK, Ty::Hex);
        at += 1;
    }
    let rest: Vec<&str> = (at..n_at).filter_map(|i| m.get(i)).collect();
    let id_type = m.scoped(name::REPORT_ID_TYPE);
    match (m.ty, rest.as_slice()) {
        ("TMP", [_, _]) => {
            m.put(at, name::TEMPERATURE_ALARM_TYPE, Ty::Dec);
            m.put(at + 1, name::DEVICE_TEMPERATURE, Ty::Float);
        }
        (_, [_, t]) if t.len() == 2 => {
            m.put(at, name::EXTERNAL_POWER_MV, Ty::Dec);
            m.put(at + 1, &id_type, Ty::Hex);
        }
        (_, [a, b]) if a.len() <= 1 && b.len() <= 1 => {
            let (id, ty) = (m.scoped(name::REPORT_ID), m.scoped(name::REPORT_TYPE));
            m.put(at, &id, Ty::Dec);
            m.put(at + 1, &ty, Ty::Dec);
        }
        (_, [t]) if t.len() == 2 => {
            m.put(at, &id_type, Ty::Hex);
        }
        _ => {}
    }
}

/// A vehicle tracker's device status: 6 hex digits (10 with an EIO100 expander), its
/// motion byte first (`1x` ignition off, `2x` on, `4x` no ignition signal).
fn is_status(s: &str) -> bool {
    (s.len() == 6 || s.len() == 10)
        && is_hex(s)
        && matches!(s.as_bytes().first(), Some(b'1' | b'2' | b'4'))
}

fn is_hour_meter(s: &str) -> bool {
    s.is_empty() || {
        let mut parts = s.split(':');
        let ok = |p: Option<&str>, max: usize| p.is_some_and(|p| p.len() <= max && is_digits(p));
        ok(parts.next(), 7) && ok(parts.next(), 2) && ok(parts.next(), 2) && parts.next().is_none()
    }
}

fn is_percent(s: &str) -> bool {
    s.len() <= 3 && is_digits(s) && s.parse::<u32>().is_ok_and(|v| v <= 100)
}

/// The tail of `GTFRI` / `GTERI`, by family.
fn periodic_tail(m: &mut Msg<'_>, start: usize) {
    let tail: Vec<&str> = (start..m.end).filter_map(|i| m.get(i)).collect();
    let family = m.family();
    match family {
        Some(Family::Gv200) => {
            let names = [
                (name::MILEAGE_KM.to_string(), Ty::Float),
                (name::HOUR_METER_COUNT.to_string(), Ty::Str),
                (name::analog_input(1), Ty::Dec),
                (name::analog_input(2), Ty::Dec),
                (name::analog_input(3), Ty::Dec),
                (name::DIGITAL_INPUTS.to_string(), Ty::Hex),
                (name::DIGITAL_OUTPUTS.to_string(), Ty::Hex),
                (name::UART_DEVICE_TYPE.to_string(), Ty::Dec),
            ];
            let n = names.len().min(tail.len());
            for (k, (nm, ty)) in names.iter().take(n).enumerate() {
                m.put(start + k, nm, *ty);
            }
            if m.ty == "ERI" && tail.len() >= names.len() {
                eri_sections(m, start + names.len());
            }
            return;
        }
        Some(Family::Gl5) if tail.len() >= 3 => {
            gl5_tail(m, start);
            return;
        }
        Some(Family::Gt501) if tail.len() == 2 => {
            m.put(start, name::CSQ_BER, Ty::Dec);
            m.put(start + 1, name::BATTERY_PERCENT, Ty::Dec);
            return;
        }
        Some(Family::Personal) if m.ty == "ERI" => {
            if tail.first().is_some_and(|v| v.is_empty() || is_percent(v)) {
                m.put(start, name::BATTERY_PERCENT, Ty::Dec);
            }
            return;
        }
        Some(Family::Personal | Family::Gl5 | Family::Gt501) => {
            personal_tail(m, start);
            return;
        }
        _ => {}
    }
    // Vehicle trackers (and unknown models that send a device status).
    let cv = m.model.is_some_and(|md| matches!(md.code, "BD" | "DF"));
    let status = tail
        .iter()
        .position(|s| is_status(s) || (cv && s.len() == 2 && is_hex(s)))
        .filter(|&s| {
            s >= 1
                && tail
                    .get(s - 1)
                    .is_some_and(|b| b.is_empty() || is_percent(b))
        });
    let Some(s) = status else {
        if tail.first().is_some_and(|v| v.contains('.')) {
            m.put(start, name::MILEAGE_KM, Ty::Float);
            if tail
                .get(1)
                .is_some_and(|v| !v.is_empty() && is_hour_meter(v))
            {
                m.put(start + 1, name::HOUR_METER_COUNT, Ty::Str);
            }
        } else if family.is_none() {
            personal_tail(m, start);
        }
        return;
    };
    let pre = s - 1;
    if pre >= 1
        && tail
            .first()
            .is_some_and(|v| v.is_empty() || v.contains('.'))
    {
        m.put(start, name::MILEAGE_KM, Ty::Float);
    }
    if pre >= 2 && tail.get(1).is_some_and(|v| is_hour_meter(v)) {
        m.put(start + 1, name::HOUR_METER_COUNT, Ty::Str);
    }
    for k in 2..pre {
        m.put(start + k, &name::analog_input(k as u32 - 1), Ty::Dec);
    }
    m.put(start + pre, name::BACKUP_BATTERY_PERCENT, Ty::Dec);
    if tail.get(s).is_some_and(|v| v.len() == 2) {
        m.put(start + s, name::MOTION_STATUS, Ty::Hex);
    } else {
        m.put(start + s, name::DEVICE_STATUS, Ty::Hex);
    }
    let after = start + s + 1;
    if m.ty == "ERI" {
        m.put(after, name::UART_DEVICE_TYPE, Ty::Dec);
        eri_sections(m, after + 1);
    } else if m.model.is_some_and(Model::has_vin) {
        // GV500 OBD family: the engine values follow the status.
        m.put(after, name::ENGINE_RPM, Ty::Dec);
        m.put(after + 1, name::FUEL_CONSUMPTION, Ty::Float);
        m.put(after + 2, name::FUEL_LEVEL_INPUT, Ty::Dec);
    }
}

/// Personal trackers: a battery percentage last, a mileage (with a fraction) first.
fn personal_tail(m: &mut Msg<'_>, start: usize) {
    let last = m.end.checked_sub(1).filter(|&l| l >= start);
    if let Some(l) = last {
        if m.get(l).is_some_and(is_percent) {
            m.put(l, name::BATTERY_PERCENT, Ty::Dec);
        }
    }
    if m.get(start).is_some_and(|v| v.contains('.')) {
        m.put(start, name::MILEAGE_KM, Ty::Float);
    }
}

/// GL5xx: CSQ BER, battery voltage (mV), battery %, mode, motion, device temperature.
fn gl5_tail(m: &mut Msg<'_>, start: usize) {
    let names = [
        (name::CSQ_BER, Ty::Dec),
        (name::BATTERY_MV, Ty::Dec),
        (name::BATTERY_PERCENT, Ty::Dec),
        (name::MODE_SELECTION, Ty::Dec),
        (name::MOVEMENT_STATUS, Ty::Dec),
        (name::DEVICE_TEMPERATURE, Ty::Float),
    ];
    for (k, (n, ty)) in names.iter().enumerate() {
        m.put(start + k, n, *ty);
    }
}

/// The tail of event reports of the generic layout.
fn plain_tail(m: &mut Msg<'_>, start: usize) {
    match m.family() {
        Some(Family::Vehicle | Family::Gv200)
            if m.get(start)
                .is_some_and(|v| v.is_empty() || v.contains('.')) =>
        {
            m.put(start, name::MILEAGE_KM, Ty::Float);
        }
        Some(Family::Vehicle | Family::Gv200) => {}
        Some(Family::Gt501) if m.end.saturating_sub(start) == 2 => {
            m.put(start, name::CSQ_BER, Ty::Dec);
            m.put(start + 1, name::BATTERY_PERCENT, Ty::Dec);
        }
        Some(_) => personal_tail(m, start),
        None => {}
    }
}

/// GL5xx state reports (`GTSTR`, `GTCTN`, `GTLSA`): the battery percentage is the fifth field
/// after the device name, the block follows.
fn gl5_state(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    m.put(first + 4, name::BATTERY_PERCENT, Ty::Dec);
    let found = block(m, first + 5, true)
        .map(|b| vec![b])
        .unwrap_or_else(|| anchored(m, first + 5));
    finish_blocks(m, found, TailKind::None)
}

/// `GTERI`'s peripheral sections, in the mask's bit order, from `at`. Stops at a bit whose
/// layout is unknown (the rest stays under its place).
fn eri_sections(m: &mut Msg<'_>, mut at: usize) {
    let mask = m
        .shared
        .iter()
        .find(|r| r.name == name::ERI_MASK)
        .and_then(|r| match r.value {
            Some(crate::proto::raw_value::Value::UintValue(v)) => Some(v),
            _ => None,
        })
        .unwrap_or(0);
    let gv350m = m.model.is_some_and(|md| md.name == "GV350M");
    let gv600m = m.model.is_some_and(|md| md.name.starts_with("GV600M"));
    let bit = |b: u32| mask & (1 << b) != 0;
    let known = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 8);
    if mask & !known != 0 {
        m.lenient.push(super::LENIENT_ERI_MASK);
        return;
    }
    let count = |m: &Msg<'_>, i: usize| -> Option<usize> {
        m.get(i)
            .filter(|s| s.len() <= 2 && is_digits(s))
            .and_then(|s| s.parse().ok())
    };
    if bit(0) && !gv350m {
        m.put(at, name::DIGITAL_FUEL_SENSOR_DATA, Ty::Hex);
        at += 1;
    }
    if bit(1) {
        let Some(n) = count(m, at) else { return };
        m.put(at, name::ONE_WIRE_COUNT, Ty::Dec);
        at += 1;
        for i in 1..=n as u32 {
            let kind = m.get(at + 1).unwrap_or_default();
            m.put(at, &name::one_wire(i, "id"), Ty::Str);
            m.put(at + 1, &name::one_wire(i, "type"), Ty::Dec);
            if kind == "1" {
                m.put(at + 2, &name::one_wire(i, "temperature"), Ty::Hex16);
            } else {
                m.put(at + 2, &name::one_wire(i, "data"), Ty::Str);
            }
            at += 3;
        }
    }
    if bit(2) {
        m.put(at, name::CAN_DEVICE_STATE, Ty::Dec);
        let Some(cmask) = m.get(at + 1).filter(|s| is_hex(s) && s.len() <= 8) else {
            return;
        };
        let cmask = u32::from_str_radix(cmask, 16).unwrap_or(0) & 0x3FFF_FFFF;
        m.put(at + 1, name::CAN_REPORT_MASK, Ty::Hex);
        let end = m.end;
        match can_fields(m, cmask, at + 2, end) {
            Some(next) => at = next,
            None => return,
        }
    }
    if (bit(3) || bit(4) || (bit(0) && gv350m)) && at + 2 < m.end {
        let Some(n) = count(m, at) else { return };
        m.put(at, name::FUEL_SENSOR_COUNT, Ty::Dec);
        at += 1;
        for i in 1..=n as u32 {
            m.put(at, &name::fuel_sensor(i, "type"), Ty::Dec);
            at += 1;
            if gv350m {
                m.put(at, &name::fuel_sensor(i, "uart_id"), Ty::Dec);
                at += 1;
                if bit(0) {
                    m.put(at, &name::fuel_sensor(i, "data"), Ty::Hex);
                    at += 1;
                }
            }
            if bit(3) {
                m.put(at, &name::fuel_sensor(i, "percent"), Ty::Float);
                at += 1;
            }
            if bit(4) {
                m.put(at, &name::fuel_sensor(i, "volume"), Ty::Float);
                at += 1;
            }
        }
    }
    if bit(7) && m.model.is_none_or(|md| md.name != "GL320M") {
        let Some(n) = count(m, at) else { return };
        m.put(at, name::AC100_COUNT, Ty::Dec);
        at += 1;
        for i in 1..=n as u32 {
            let kind = m.get(at + 1).unwrap_or_default();
            m.put(at, &name::ac100(i, "serial"), Ty::Str);
            m.put(at + 1, &name::ac100(i, "type"), Ty::Dec);
            m.put(at + 2, &name::ac100(i, "temperature"), Ty::Float);
            at += 3;
            if kind == "2" {
                m.put(at, &name::ac100(i, "humidity"), Ty::Float);
                at += 1;
            }
        }
    }
    if bit(8) {
        let Some(n) = count(m, at) else { return };
        m.put(at, name::BLE_COUNT, Ty::Dec);
        at += 1;
        for i in 1..=n as u32 {
            m.put(at, &name::ble(i, "index"), Ty::Str);
            m.put(at + 1, &name::ble(i, "type"), Ty::Dec);
            m.put(at + 2, &name::ble(i, "model"), Ty::Dec);
            at += 3;
            if gv600m {
                m.put(at, &name::ble(i, "raw_data_length"), Ty::Dec);
                at += 1;
            }
            m.put(at, &name::ble(i, "raw_data"), Ty::Str);
            let Some(amask) = m.get(at + 1).filter(|s| is_hex(s) && s.len() <= 4) else {
                return;
            };
            let amask = u16::from_str_radix(amask, 16).unwrap_or(0);
            m.put(at + 1, &name::ble(i, "append_mask"), Ty::Hex);
            at += 2;
            match ble_fields(m, i, amask, at) {
                Some(next) => at = next,
                None => return,
            }
        }
    }
}

/// The fields a Bluetooth accessory's append mask announces, in bit order.
fn ble_fields(m: &mut Msg<'_>, i: u32, mask: u16, mut at: usize) -> Option<usize> {
    const BITS: &[(u16, &str, Ty)] = &[
        (0, "name", Ty::Str),
        (1, "mac", Ty::Str),
        (2, "status", Ty::Dec),
        (3, "battery_mv", Ty::Dec),
        (4, "temperature", Ty::Float),
        (5, "humidity", Ty::Float),
        (7, "io", Ty::Str),
        (8, "event", Ty::Str),
        (9, "tire_pressure", Ty::Str),
        (10, "timestamp", Ty::Str),
        (11, "enhanced_temperature", Ty::Float),
        (12, "magnet", Ty::Str),
        (13, "battery_percent", Ty::Dec),
        (14, "relay", Ty::Str),
    ];
    let known = BITS.iter().fold(0u16, |a, (b, _, _)| a | (1 << b));
    if mask & !known != 0 {
        m.lenient.push(super::LENIENT_ERI_MASK);
        return None;
    }
    for (b, n, ty) in BITS {
        if mask & (1 << b) != 0 {
            m.put(at, &name::ble(i, n), *ty);
            at += 1;
        }
    }
    Some(at)
}

/// The CAN fields `mask` announces, from `at`, not past `limit`. Returns the index after
/// them, `None` when a bit of unknown layout stops the reading.
fn can_fields(m: &mut Msg<'_>, mask: u32, mut at: usize, limit: usize) -> Option<usize> {
    // Emitted in ascending bit order, except that bit 5 (RPM) comes before bit 4 (speed).
    const ORDER: &[(u32, &str, Ty)] = &[
        (0, name::CAN_VIN, Ty::Str),
        (1, name::CAN_IGNITION_KEY, Ty::Dec),
        (2, name::CAN_TOTAL_DISTANCE, Ty::Str),
        (3, name::CAN_TOTAL_FUEL_USED, Ty::Float),
        (5, name::CAN_ENGINE_RPM, Ty::Dec),
        (4, name::CAN_VEHICLE_SPEED, Ty::Dec),
        (6, name::CAN_COOLANT_TEMPERATURE, Ty::Dec),
        (7, name::CAN_FUEL_CONSUMPTION, Ty::Str),
        (8, name::CAN_FUEL_LEVEL, Ty::Str),
        (9, name::CAN_RANGE, Ty::Dec),
        (10, name::CAN_ACCELERATOR_PEDAL, Ty::Dec),
        (11, name::CAN_ENGINE_HOURS, Ty::Float),
        (12, name::CAN_DRIVING_TIME, Ty::Float),
        (13, name::CAN_IDLE_TIME, Ty::Float),
        (14, name::CAN_IDLE_FUEL_USED, Ty::Str),
        (15, name::CAN_AXLE_WEIGHT_2, Ty::Dec),
        (16, name::CAN_TACHOGRAPH_INFO, Ty::Hex),
        (17, name::CAN_INDICATORS, Ty::Hex),
        (18, name::CAN_LIGHTS, Ty::Hex),
        (19, name::CAN_DOORS, Ty::Hex),
        (20, name::CAN_VEHICLE_OVERSPEED_TIME, Ty::Float),
        (21, name::CAN_ENGINE_OVERSPEED_TIME, Ty::Float),
    ];
    let model = m.model.map(|md| md.name).unwrap_or_default();
    let ceu = matches!(model, "GV350CEU" | "GV355CEU");
    let model_bits: &[(u32, &str)] = if model == "GV350M" {
        &[
            (22, "can_impulse_distance"),
            (23, "can_gross_vehicle_weight"),
            (24, "can_catalyst_level"),
        ]
    } else if ceu {
        &[
            (23, "can_engine_cold_starts"),
            (24, "can_engine_all_starts"),
            (25, "can_engine_ignition_starts"),
            (26, "can_engine_cold_running_time"),
            (27, "can_handbrake_applies"),
        ]
    } else {
        &[]
    };
    let model_mask = model_bits.iter().fold(0u32, |a, (b, _)| a | (1 << b));
    // Bit 22 (total distance impulses) is in the binary report only, except on the GV350M
    // whose bit 22 is its impulse distance field.
    let known = 0x007F_FFFF | model_mask | (1 << 29) | (1 << 30) | (1 << 31);
    let put = |m: &mut Msg<'_>, at: &mut usize, n: &str, ty: Ty| {
        if *at < limit {
            m.put(*at, n, ty);
        }
        *at += 1;
    };
    for (b, n, ty) in ORDER {
        if mask & (1 << b) != 0 {
            put(m, &mut at, n, *ty);
        }
    }
    for (b, n) in model_bits {
        if mask & (1 << b) != 0 {
            put(m, &mut at, n, Ty::Str);
        }
    }
    if mask & !known != 0 {
        m.lenient.push(super::LENIENT_CAN_MASK);
        return None;
    }
    if mask & (1 << 29) != 0 {
        let ext = m
            .get(at)
            .filter(|s| is_hex(s) && s.len() <= 8)
            .and_then(|s| u32::from_str_radix(s, 16).ok());
        put(m, &mut at, name::CAN_EXPANSION_MASK, Ty::Hex);
        let ext = ext?;
        const EXT: &[&str] = &[
            "can_adblue_level",
            "can_axle_weight_1",
            "can_axle_weight_3",
            "can_axle_weight_4",
            "can_tachograph_overspeed",
            "can_tachograph_motion",
            "can_tachograph_direction",
            "can_analog_input_mv",
            "can_engine_braking_factor",
            "can_pedal_braking_factor",
            "can_accelerator_kickdowns",
            "can_effective_engine_speed_time",
            "can_cruise_control_time",
            "can_accelerator_kickdown_time",
            "can_brake_applications",
            "can_driver1_card",
            "can_driver2_card",
            "can_driver1_name",
            "can_driver2_name",
            "can_registration",
            "can_expansion_information",
            "can_rapid_brakings",
            "can_rapid_accelerations",
            "can_engine_torque",
            "can_service_distance",
            "can_ambient_temperature",
        ];
        for (b, n) in EXT.iter().enumerate() {
            if ext & (1 << b) != 0 {
                put(m, &mut at, n, Ty::Str);
            }
        }
        if ext >> EXT.len() != 0 {
            m.lenient.push(super::LENIENT_CAN_MASK);
            return None;
        }
    }
    Some(at)
}

/// `GTCAN`: report type, CAN device state, report mask, the masked fields, then the GNSS
/// block (bit 30) and the cell (bit 31), found from the end.
fn can_report(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    m.put(first, name::CAN_REPORT_TYPE, Ty::Hex);
    m.put(first + 1, name::CAN_DEVICE_STATE, Ty::Dec);
    let mask = m
        .get(first + 2)
        .filter(|s| is_hex(s) && s.len() <= 8)
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .unwrap_or(0);
    m.put(first + 2, name::CAN_REPORT_MASK, Ty::Hex);
    let gnss = mask & (1 << 30) != 0;
    let gsm = mask & (1 << 31) != 0;
    let mut found = Vec::new();
    let mut limit = m.end;
    if gnss {
        let len = if gsm { 12 } else { 7 };
        if let Some(b) = m.end.checked_sub(len).filter(|&b| b > first + 2) {
            if let Some(bl) = block(m, b, gsm) {
                limit = b;
                found.push(bl);
            }
        }
    }
    can_fields(m, mask & 0x3FFF_FFFF, first + 3, limit);
    let recs = records(found);
    if limit < m.end {
        m.blocks_end = Some(m.end);
    }
    recs
}

/// `GTOBD`: report type, OBD report mask, the masked fields, the GNSS block (bit 20) with
/// its cell (bit 21), the mileage (bit 22).
fn obd(m: &mut Msg<'_>) -> Vec<Record> {
    const ORDER: &[(u32, &str, Ty)] = &[
        (0, name::OBD_VIN, Ty::Str),
        (1, name::OBD_CONNECT, Ty::Dec),
        (2, name::OBD_POWER_MV, Ty::Dec),
        (3, name::OBD_SUPPORTED_PIDS, Ty::Str),
        (4, name::OBD_ENGINE_RPM, Ty::Dec),
        (5, name::OBD_VEHICLE_SPEED, Ty::Dec),
        (6, name::OBD_COOLANT_TEMPERATURE, Ty::Dec),
        (7, name::OBD_FUEL_CONSUMPTION, Ty::Float),
        (8, name::OBD_DTCS_CLEARED_DISTANCE, Ty::Dec),
        (9, name::OBD_MIL_ACTIVATED_DISTANCE, Ty::Dec),
        (10, name::OBD_MIL_STATUS, Ty::Dec),
        (11, name::OBD_DTC_COUNT, Ty::Dec),
        (12, name::OBD_DTCS, Ty::Str),
        (13, name::OBD_THROTTLE_POSITION, Ty::Dec),
        (14, name::OBD_ENGINE_LOAD, Ty::Dec),
        (15, name::OBD_FUEL_LEVEL_INPUT, Ty::Dec),
        (16, name::OBD_PROTOCOL, Ty::Str),
        (19, name::OBD_ODOMETER_KM, Ty::Dec),
    ];
    let first = m.first;
    m.put(first, name::OBD_REPORT_TYPE, Ty::Dec);
    let mask = m
        .get(first + 1)
        .filter(|s| is_hex(s) && s.len() <= 8)
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .unwrap_or(0);
    m.put(first + 1, name::OBD_REPORT_MASK, Ty::Hex);
    let mut limit = m.end;
    if mask & (1 << 22) != 0 {
        limit = limit.saturating_sub(1);
        m.put(limit, name::MILEAGE_KM, Ty::Float);
    }
    let mut found = Vec::new();
    if mask & (1 << 20) != 0 {
        let gsm = mask & (1 << 21) != 0;
        let len = if gsm { 12 } else { 7 };
        if let Some(b) = limit.checked_sub(len).filter(|&b| b > first + 1) {
            if let Some(bl) = block(m, b, gsm) {
                limit = b;
                found.push(bl);
            }
        }
    }
    let mut at = first + 2;
    for (b, n, ty) in ORDER {
        if mask & (1 << b) != 0 {
            if at < limit {
                m.put(at, n, *ty);
            }
            at += 1;
        }
    }
    if !found.is_empty() {
        m.blocks_end = Some(m.end);
    }
    records(found)
}

/// `GTIGN`/`GTIGF`/`GTVGN`/`GTVGF`: the duration of the opposite ignition state, one block,
/// then hour meter and mileage (the reverse of `GTFRI`'s order).
fn ign(m: &mut Msg<'_>) -> Vec<Record> {
    let mut at = m.first;
    if m.model.is_some_and(Model::is_cv200) {
        // CV200: a reserved field and a report type before the duration.
        m.put(at + 1, name::IGN_REPORT_TYPE, Ty::Dec);
        at += 2;
    }
    let duration = if matches!(m.ty, "IGN" | "VGN") {
        name::IGNITION_OFF_SECONDS
    } else {
        name::IGNITION_ON_SECONDS
    };
    m.put(at, duration, Ty::Dec);
    let found = block(m, at + 1, true).map(|b| vec![b]).unwrap_or_default();
    if let Some(e) = found.last().map(|b| b.end) {
        m.blocks_end = Some(e);
        if m.get(e).is_some_and(is_hour_meter) {
            m.put(e, name::HOUR_METER_COUNT, Ty::Str);
        }
        if m.get(e + 1)
            .is_some_and(|v| v.is_empty() || v.contains('.'))
        {
            m.put(e + 1, name::MILEAGE_KM, Ty::Float);
        }
    }
    records(found)
}

/// `GTIDA`: an empty field, the RFID, report type, number (1), the block, the mileage.
fn ida(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    m.put(first + 1, name::RFID, Ty::Str);
    m.put(first + 2, name::IDA_REPORT_TYPE, Ty::Dec);
    m.put(first + 3, name::NUMBER, Ty::Dec);
    let found = block(m, first + 4, true)
        .map(|b| vec![b])
        .unwrap_or_default();
    if let Some(e) = found.last().map(|b| b.end) {
        m.blocks_end = Some(e);
        m.put(e, name::MILEAGE_KM, Ty::Float);
    }
    records(found)
}

/// `GTDTT`: two reserved fields, data type, data length, the data in hex.
fn dtt(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    m.put(first + 2, name::DATA_TYPE, Ty::Dec);
    m.put(first + 3, name::DATA_LENGTH, Ty::Dec);
    let at = first + 4;
    if let Some(v) = m.get(at) {
        m.mark(at);
        match hex::decode(v) {
            Ok(b) if !b.is_empty() => m.shared.push(raw::bytes(name::TRANSPARENT_DATA, b)),
            _ if !v.is_empty() => m.shared.push(raw::string(name::TRANSPARENT_DATA, v)),
            _ => {}
        }
    }
    Vec::new()
}

/// `GTBAA` (accessory alarm) / `GTBID` (beacon id): the accessory's fields by its append
/// mask, then the block.
fn accessory(m: &mut Msg<'_>, alarm: bool) -> Vec<Record> {
    let mut at = m.first;
    let names: &[(&str, Ty)] = if alarm {
        &[
            (name::ACCESSORY_INDEX, Ty::Hex),
            (name::ACCESSORY_TYPE, Ty::Dec),
            (name::ACCESSORY_MODEL, Ty::Dec),
            (name::ACCESSORY_ALARM_TYPE, Ty::Hex),
        ]
    } else {
        &[
            (name::ACCESSORY_COUNT, Ty::Dec),
            (name::ACCESSORY_MODEL, Ty::Dec),
        ]
    };
    for (n, ty) in names {
        m.put(at, n, *ty);
        at += 1;
    }
    let mask = m
        .get(at)
        .filter(|s| is_hex(s) && s.len() <= 4)
        .and_then(|s| u16::from_str_radix(s, 16).ok())
        .unwrap_or(0);
    m.put(at, name::ACCESSORY_APPEND_MASK, Ty::Hex);
    at += 1;
    let bits: &[(u16, &str, Ty)] = &[
        (0, name::ACCESSORY_NAME, Ty::Str),
        (1, name::ACCESSORY_MAC, Ty::Str),
        (2, name::ACCESSORY_STATUS, Ty::Dec),
        (3, name::ACCESSORY_VOLTAGE_MV, Ty::Dec),
        (4, name::ACCESSORY_TEMPERATURE, Ty::Float),
        (5, name::ACCESSORY_HUMIDITY, Ty::Float),
    ];
    for (b, n, ty) in bits {
        if mask & (1 << b) != 0 {
            m.put(at, n, *ty);
            at += 1;
        }
    }
    let found = block(m, at, true)
        .map(|b| vec![b])
        .unwrap_or_else(|| anchored(m, at));
    finish_blocks(m, found, TailKind::Plain)
}

/// `GTGSM`: the fix type that triggered it, then six neighbour cells and the serving cell
/// (`<MCC>,<MNC>,<LAC>,<cell id>,<RxLevel>,<reserved>` each).
fn gsm(m: &mut Msg<'_>) -> Vec<Record> {
    // GTGSM has no device name: field 3 is the fix type.
    let first = m.first - 1;
    if let Some(i) = m.used.get_mut(first) {
        *i = false;
    }
    m.shared.retain(|r| r.name != name::DEVICE_NAME);
    m.put(first, name::FIX_TYPE, Ty::Str);
    let mut rec = Record::default();
    let mut at = first + 1;
    while at + 5 <= m.end {
        let group: Vec<&str> = (0..4).filter_map(|k| m.get(at + k)).collect();
        let rx = m.get(at + 4).unwrap_or_default();
        if let Cell::Present(mut c) = cell(&group) {
            c.signal = rx.parse().ok();
            rec.cells.push(c);
            for k in at..at + 5 {
                m.mark(k);
            }
        }
        at += 6;
    }
    // The serving cell is the last group: it goes first.
    rec.cells.reverse();
    vec![rec]
}

/// `GTWIF`: the access point count and per access point MAC, RSSI and three reserved
/// fields; the battery percentage last.
fn wif(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    let n: usize = m.get(first).and_then(|s| s.parse().ok()).unwrap_or(0);
    m.put(first, name::WIFI_COUNT, Ty::Dec);
    let mut rec = Record::default();
    let mut at = first + 1;
    for _ in 0..n.min(64) {
        let (Some(mac), Some(rssi)) = (m.get(at), m.get(at + 1)) else {
            break;
        };
        if !(mac.len() == 12 && is_hex(mac)) {
            break;
        }
        let mut pretty = String::with_capacity(17);
        for (k, ch) in mac.chars().enumerate() {
            if k > 0 && k % 2 == 0 {
                pretty.push(':');
            }
            pretty.push(ch.to_ascii_lowercase());
        }
        rec.wifi.push(WifiAccessPoint {
            mac: pretty,
            signal_dbm: rssi.parse().ok(),
        });
        m.mark(at);
        m.mark(at + 1);
        at += 5;
    }
    if let Some(l) = m.end.checked_sub(1) {
        if m.get(l).is_some_and(is_percent) {
            m.put(l, name::BATTERY_PERCENT, Ty::Dec);
        }
    }
    vec![rec]
}

/// `GTLBS`: trigger, report type, battery %, reserved, motion, reserved ×2, a component
/// mask, then seven cells (`MCC, MNC, LAC, cell id, RxLevel` and a reserved field each).
fn lbs(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    m.put(first, name::LBS_TRIGGER_TYPE, Ty::Dec);
    m.put(first + 1, name::LBS_REPORT_TYPE, Ty::Dec);
    m.put(first + 2, name::BATTERY_PERCENT, Ty::Dec);
    m.put(first + 4, name::MOVEMENT_STATUS, Ty::Dec);
    m.put(first + 7, name::COMPONENT_MASK, Ty::Hex);
    let mut rec = Record::default();
    let mut at = first + 8;
    for _ in 0..7 {
        let group: Vec<&str> = (0..4).filter_map(|k| m.get(at + k)).collect();
        if let Cell::Present(mut c) = cell(&group) {
            c.signal = m.get(at + 4).and_then(|s| s.parse().ok());
            rec.cells.push(c);
            for k in at..at + 5 {
                m.mark(k);
            }
        }
        at += 6;
    }
    vec![rec]
}

/// `GTVER`: device type, firmware and hardware versions (4 hex digits each).
fn ver(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    m.put(first, name::DEVICE_TYPE, Ty::Str);
    m.put(first + 1, name::FIRMWARE_VERSION, Ty::Str);
    m.put(first + 2, name::HARDWARE_VERSION, Ty::Str);
    Vec::new()
}

/// `GTINF`: device information. The front is common; what follows the charging flag
/// depends on the family.
fn inf(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    if m.end <= first + 8 {
        return Vec::new();
    }
    m.put(first, name::MOTION_STATUS, Ty::Hex);
    m.put(first + 1, name::ICCID, Ty::Str);
    m.put(first + 2, name::CSQ_RSSI, Ty::Dec);
    m.put(first + 3, name::CSQ_BER, Ty::Dec);
    m.put(first + 4, name::EXTERNAL_POWER_SUPPLY, Ty::Dec);
    let model = m.model;
    let name_of = model.map(|md| md.name).unwrap_or_default();
    // The fifth field is the mileage on personal trackers (with a fraction), the main power
    // voltage on vehicle trackers.
    if m.get(first + 5).is_some_and(|v| v.contains('.')) {
        m.put(first + 5, name::MILEAGE_KM, Ty::Float);
    } else {
        m.put(first + 5, name::EXTERNAL_POWER_MV, Ty::Dec);
    }
    let vehicle = matches!(
        model.map(|md| md.family),
        Some(Family::Vehicle | Family::Gv200)
    );
    if vehicle && !matches!(name_of, "GV350M" | "GV310LAU" | "GV500VC") {
        m.put(first + 6, name::BACKUP_POWER_MV, Ty::Dec);
    }
    m.put(first + 7, name::BATTERY_VOLTAGE, Ty::Float);
    m.put(first + 8, name::CHARGING, Ty::Dec);
    let after = first + 9;
    match model.map(|md| md.family) {
        Some(Family::Personal | Family::Gl5 | Family::Gt501) => {
            let names = [
                (name::LED_ON, Ty::Dec),
                (name::GPS_ON_NEED, Ty::Dec),
                (name::GPS_ANTENNA_TYPE, Ty::Dec),
                (name::GPS_ANTENNA_STATE, Ty::Dec),
                (name::LAST_FIX_TIME, Ty::Str),
                (name::BATTERY_PERCENT, Ty::Dec),
            ];
            if m.get(after + 4).is_some_and(|v| v.is_empty() || is_time(v)) {
                for (k, (n, ty)) in names.iter().enumerate() {
                    m.put(after + k, n, *ty);
                }
            }
        }
        Some(Family::Vehicle | Family::Gv200) if name_of != "GV310LAU" => {
            if m.get(after + 3).is_some_and(is_time) {
                m.put(after, name::LED_ON, Ty::Dec);
                m.put(after + 3, name::LAST_FIX_TIME, Ty::Str);
            }
            time_zone(m, after);
        }
        _ if name_of == "GV310LAU" => {
            let names = [
                (name::LED_ON, Ty::Dec),
                (name::POWER_SAVING, Ty::Dec),
                (name::EXTERNAL_GPS_ANTENNA, Ty::Dec),
                (name::LAST_FIX_TIME, Ty::Str),
                (name::PIN_MASK, Ty::Hex),
            ];
            for (k, (n, ty)) in names.iter().enumerate() {
                m.put(after + k, n, *ty);
            }
            for k in 0..3u32 {
                m.put(after + 5 + k as usize, &name::analog_input(k + 1), Ty::Dec);
            }
            time_zone(m, after);
        }
        _ => {}
    }
    Vec::new()
}

/// `GTINF`'s time zone offset (`+0800`) and the daylight-saving flag after it.
fn time_zone(m: &mut Msg<'_>, from: usize) {
    let tz = (from..m.end).find(|&i| {
        m.get(i).is_some_and(|v| {
            v.len() == 5 && matches!(v.as_bytes()[0], b'+' | b'-') && is_digits(&v[1..])
        })
    });
    if let Some(i) = tz {
        m.put(i, name::TIME_ZONE_OFFSET, Ty::Str);
        m.put(i + 1, name::DAYLIGHT_SAVING, Ty::Dec);
    }
}

/// Reports of an unknown layout: numbered if the shape fits, else every longitude/latitude/
/// time triple is a block and the rest is kept under its place.
fn generic(m: &mut Msg<'_>) -> Vec<Record> {
    let first = m.first;
    let found = anchored(m, first);
    if found.is_empty() {
        m.lenient.push(super::LENIENT_UNKNOWN_LAYOUT);
    }
    let tail = match m.ty {
        "FRI" | "ERI" => TailKind::Periodic,
        _ if NUMBERED.contains(&m.ty) => TailKind::Plain,
        _ => TailKind::None,
    };
    finish_blocks(m, found, tail)
}

/// `+ACK:GT<cmd>` (a command answer or the `GTHBD` heartbeat), Protocol Pro's `+ACK:<word>`
/// and `+NACK:<word>`.
fn ack(text: &str, f: &[&str], refused: bool, word: &str) -> Result<Report, TextError> {
    let n = f.len();
    let get = |i: usize| f.get(i).copied().unwrap_or_default();
    let count = n
        .checked_sub(1)
        .map(get)
        .filter(|c| is_count(c))
        .map(str::to_string);
    let send_time = n.checked_sub(2).map(get).filter(|t| is_time(t));
    let track = word.starts_with("GT") && !refused;
    // @Track: version, IMEI, device name; Protocol Pro: IMEI, device type, protocol and
    // custom versions.
    let (id, params_from) = if track { (get(2), 4) } else { (get(1), 5) };
    if !crate::device_id::is_valid(id) {
        return Err(TextError::Malformed("no device id"));
    }
    let ty = word.strip_prefix("GT").unwrap_or(word);
    let mut rep = Report::new(Class::Report, ty);
    rep.device_id = Some(id.to_string());
    let mut shared = vec![raw::string(name::HEADER, get(0))];
    if track {
        rep.model = models::from_version(get(1));
        shared.extend(typed(name::PROTOCOL_VERSION, get(1), Ty::Str));
        shared.extend(typed(name::DEVICE_NAME, get(3), Ty::Str));
    } else {
        rep.model = models::by_code(get(2));
        shared.extend(typed(name::DEVICE_TYPE, get(2), Ty::Str));
        shared.extend(typed(name::PROTOCOL_VERSION, get(3), Ty::Str));
        shared.extend(typed(name::CUSTOM_VERSION, get(4), Ty::Str));
    }
    let heartbeat = track && ty == "HBD";
    let tail_len = usize::from(count.is_some()) + usize::from(send_time.is_some());
    let end = n.saturating_sub(tail_len);
    if heartbeat {
        rep.class = Class::Heartbeat;
        for (k, v) in f.iter().enumerate().take(end).skip(params_from) {
            shared.extend(typed(&format!("{}{k}", name::FIELD_PREFIX), v, Ty::Str));
        }
    } else {
        // The serial echoes the command's (the last field before the send time).
        let serial_at = end.checked_sub(1).filter(|&i| i >= params_from);
        let serial = serial_at
            .map(get)
            .filter(|s| is_count(s))
            .and_then(|s| u16::from_str_radix(s, 16).ok());
        let params_end = if serial.is_some() {
            end.saturating_sub(1)
        } else {
            end
        };
        for (k, v) in f.iter().enumerate().take(params_end).skip(params_from) {
            shared.extend(typed(
                &format!("{}{}", name::PARAMETER_PREFIX, k - params_from + 1),
                v,
                Ty::Str,
            ));
        }
        if let Some(i) = serial_at.filter(|_| serial.is_some()) {
            shared.push(raw::string(name::SERIAL_NUMBER, get(i)));
        }
        rep.class = Class::CommandAck { serial, refused };
        rep.text = Some(text.to_string());
    }
    if let Some(t) = send_time {
        shared.push(raw::string(name::SEND_TIME, t));
        rep.send_time = parse_time(t);
    }
    if let Some(c) = &count {
        shared.push(raw::string(name::COUNT_NUMBER, c));
        rep.ack = if heartbeat {
            Ack::Heartbeat {
                version: get(1).to_string(),
                count: c.clone(),
            }
        } else {
            Ack::Count(c.clone())
        };
    }
    rep.shared = shared;
    rep.records = vec![Record::default()];
    Ok(rep)
}
