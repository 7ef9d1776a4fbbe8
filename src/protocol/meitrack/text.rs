//! The text position report: `AAA` (and `AFF`, the same fields after a leading serial).
//!
//! ```text
//! <event>,<lat>,<lon>,<yymmddHHMMSS>,<A|V>,<sats>,<gsm>,<speed km/h>,<course>,<hdop>,<alt m>,
//! <mileage m>,<run time s>,<mcc|mnc|lac hex|ci hex>,<inputs hex 2><outputs hex 2>,
//! <analog>[,<event data>,<sensor>,<protocol>,<fuel hex 4>,<temperatures>,<count>,<data>...]
//! ```
//!
//! `<analog>` is `ad1|ad2|ad3|ad4|ad5` in hex (AD4 the battery, AD5 the external supply, in
//! the model's ADC scale), or on newer models `battery|power|rtc|mcu|gps` in volts with a
//! decimal point. The trailing fields are optional and positional; devices leave unused ones
//! empty. Times are UTC.

use crate::proto::{CellTower, Position};
use crate::protocol::civil::days_from_civil;

use super::mapping::name;
use super::record::{Record, V};

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("report is not ASCII text")]
    NotText,
    #[error("report has {0} fields, at least {MIN_FIELDS} expected")]
    TooFewFields(usize),
    #[error("report field {0} is not valid: {1:?}")]
    Field(&'static str, String),
}

/// Event through analog: the fields every report has.
const MIN_FIELDS: usize = 16;
/// Fields after the report's fixed ones are named by position, at most this many (a frame is
/// bounded anyway; this bounds the names).
const MAX_DATA_FIELDS: usize = 64;

fn bad(field: &'static str, v: &str) -> ReportError {
    ReportError::Field(field, v.chars().take(24).collect())
}

fn uint(field: &'static str, v: &str) -> Result<u64, ReportError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(field, v));
    }
    v.parse().map_err(|_| bad(field, v))
}

fn float(field: &'static str, v: &str) -> Result<f64, ReportError> {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    v.parse::<f64>()
        .ok()
        .filter(|f| ok && f.is_finite())
        .ok_or_else(|| bad(field, v))
}

fn hex(v: &str) -> Option<u64> {
    (!v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(v, 16).ok())
        .flatten()
}

/// `yymmddHHMMSS` (UTC, 20yy) → seconds since the epoch.
fn time(v: &str) -> Result<i64, ReportError> {
    let d = v.as_bytes();
    if d.len() != 12 || !d.iter().all(u8::is_ascii_digit) {
        return Err(bad("date_time", v));
    }
    let n = |i: usize| u32::from(d[i] - b'0') * 10 + u32::from(d[i + 1] - b'0');
    let (yy, mo, dd, h, mi, s) = (n(0), n(2), n(4), n(6), n(8), n(10));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&dd) || h > 23 || mi > 59 || s > 59 {
        return Err(bad("date_time", v));
    }
    let days = days_from_civil(2000 + i64::from(yy), mo, dd);
    Ok(days * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

/// Parses the fields after `AAA,` (or `AFF,`, whose first field is a serial).
pub fn parse(data: &[u8], aff: bool) -> Result<Record, ReportError> {
    let mut parts: Vec<&[u8]> = data.split(|&b| b == b',').collect();
    let mut rec = Record::default();
    if aff {
        let serial = parts.remove(0);
        rec.text(name::SERIAL, ascii(serial)?);
    }
    if parts.len() < MIN_FIELDS {
        return Err(ReportError::TooFewFields(parts.len()));
    }
    // The fixed fields are ASCII; the optional ones after them may carry a device's text in
    // any encoding (kept as bytes when it is not UTF-8).
    let fields = parts[..MIN_FIELDS]
        .iter()
        .map(|p| ascii(p))
        .collect::<Result<Vec<&str>, _>>()?;
    let f = &fields;
    let event = uint("event", f[0])?;
    rec.named(name::EVENT_CODE, V::Uint(event, 8));
    let latitude = float("latitude", f[1])?;
    let longitude = float("longitude", f[2])?;
    if latitude.abs() > 90.0 || longitude.abs() > 180.0 {
        return Err(bad("coordinates", &format!("{},{}", f[1], f[2])));
    }
    rec.time = Some(time(f[3])?);
    let valid = match f[4] {
        "A" => true,
        "V" => false,
        other => return Err(bad("validity", other)),
    };
    let satellites = uint("satellites", f[5])?;
    let gsm = uint("gsm_signal", f[6])?;
    rec.named(name::GSM_SIGNAL, V::Uint(gsm, 8));
    let speed = float("speed", f[7])?;
    let course = float("course", f[8])?;
    let hdop = float("hdop", f[9])?;
    let altitude = float("altitude", f[10])?;
    rec.named(name::MILEAGE, V::Uint(uint("mileage", f[11])?, 8));
    rec.named(name::RUN_TIME, V::Uint(uint("run_time", f[12])?, 8));
    if latitude == 0.0 && longitude == 0.0 {
        // No coordinates: a status record; what the fix fields said stays in raw.
        rec.named(name::SPEED, V::Double(speed));
        rec.named(name::COURSE, V::Double(course));
        rec.named(name::ALTITUDE, V::Double(altitude));
        rec.named(name::SATELLITES, V::Uint(satellites, 8));
        rec.named(name::HDOP, V::Double(hdop));
    } else {
        rec.position = Some(Position {
            latitude,
            longitude,
            altitude: Some(altitude),
            speed: Some(speed),
            course: Some(course),
            satellites: u32::try_from(satellites).ok(),
            hdop: Some(hdop),
            valid,
            ..Default::default()
        });
    }
    base_station(&mut rec, f[13], gsm)?;
    let io = hex(f[14])
        .filter(|_| f[14].len() == 4)
        .ok_or_else(|| bad("io_status", f[14]))?;
    rec.named(name::IO_STATUS, V::Uint(io, 2));
    analog(&mut rec, f[15]);
    optional(&mut rec, event, &parts[MIN_FIELDS..]);
    Ok(rec)
}

fn ascii(b: &[u8]) -> Result<&str, ReportError> {
    std::str::from_utf8(b)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or(ReportError::NotText)
}

/// A field as text, or as bytes when it is not UTF-8; nothing when empty.
fn text_or_bytes(rec: &mut Record, name: impl Into<std::borrow::Cow<'static, str>>, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(t) => rec.text(name, t),
        Err(_) => rec.named(name, V::Bytes(b.to_vec())),
    }
}

/// `mcc|mnc|lac|ci`, LAC and cell id in hex (either may be empty). Kept whole in raw (the
/// MNC's digits matter: `02` is not `2`), and typed when it names a cell.
fn base_station(rec: &mut Record, v: &str, gsm: u64) -> Result<(), ReportError> {
    rec.text(name::BASE_STATION, v);
    let parts: Vec<&str> = v.split('|').collect();
    let [mcc, mnc, lac, ci] = parts[..] else {
        return Err(bad("base_station", v));
    };
    let num = |s: &str| -> Result<u32, ReportError> {
        if s.is_empty() {
            return Ok(0);
        }
        u32::try_from(uint("base_station", s)?).map_err(|_| bad("base_station", v))
    };
    let hexnum = |s: &str| -> Result<u64, ReportError> {
        if s.is_empty() {
            return Ok(0);
        }
        hex(s).ok_or_else(|| bad("base_station", v))
    };
    let (mcc, mnc, lac, ci) = (num(mcc)?, num(mnc)?, hexnum(lac)?, hexnum(ci)?);
    if mcc != 0 {
        rec.cells.push(CellTower {
            mcc,
            mnc,
            lac,
            cell_id: ci,
            signal: i32::try_from(gsm).ok(),
        });
    }
    Ok(())
}

/// The analog field: hex ADC readings or, when any part has a decimal point, volts. A form
/// that fits neither is kept whole as text.
fn analog(rec: &mut Record, v: &str) {
    let parts: Vec<&str> = v.split('|').collect();
    if v.is_empty() || parts.len() > 5 {
        rec.text(name::ANALOG, v);
        return;
    }
    if parts.iter().any(|p| p.contains('.')) {
        let volts: Option<Vec<Option<f64>>> = parts
            .iter()
            .map(|p| {
                if p.is_empty() {
                    Some(None)
                } else {
                    float("analog", p).ok().map(Some)
                }
            })
            .collect();
        match volts {
            Some(volts) => {
                for (n, v) in name::VOLTAGES.iter().zip(volts) {
                    if let Some(v) = v {
                        rec.named(*n, V::Double(v));
                    }
                }
            }
            None => rec.text(name::ANALOG, v),
        }
        return;
    }
    let counts: Option<Vec<Option<u64>>> = parts
        .iter()
        .map(|p| {
            if p.is_empty() {
                Some(None)
            } else {
                hex(p).map(Some)
            }
        })
        .collect();
    match counts {
        Some(counts) => {
            for (n, c) in name::ADS.iter().zip(counts) {
                if let Some(c) = c {
                    rec.named(*n, V::Uint(c, 8));
                }
            }
        }
        None => rec.text(name::ANALOG, v),
    }
}

/// The optional trailing fields, by position.
fn optional(rec: &mut Record, event: u64, rest: &[&[u8]]) {
    let get = |i: usize| rest.get(i).copied().unwrap_or(b"");
    let as_str = |i: usize| std::str::from_utf8(get(i)).ok();
    text_or_bytes(rec, name::EVENT_DATA, get(0));
    if event == 37 {
        // Event 37 is a driver card swipe: its data is the card number (some firmware pads it
        // with spaces, CR or `|`).
        let card: String = String::from_utf8_lossy(get(0))
            .chars()
            .filter(|c| !matches!(c, ' ' | '\r' | '|'))
            .collect();
        if !card.is_empty() {
            rec.derived(name::DRIVER_CARD, V::Text(card));
        }
    }
    text_or_bytes(rec, name::SENSOR, get(1));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let protocol_version = match as_str(2).filter(|s| digits(s)).map(str::parse::<u64>) {
        Some(Ok(p)) => {
            rec.named(name::PROTOCOL_VERSION, V::Uint(p, 8));
            Some(p)
        }
        _ => {
            text_or_bytes(rec, name::PROTOCOL_VERSION, get(2));
            None
        }
    };
    match as_str(3).filter(|f| f.len() == 4).and_then(hex) {
        Some(v) => {
            rec.named(name::FUEL, V::Uint(v, 2));
            // Integer percent in the high byte, hundredths in the low one.
            let percent = (v >> 8) as f64 + (v & 0xFF) as f64 * 0.01;
            rec.derived(name::FUEL_PERCENT, V::Double(percent));
        }
        None => text_or_bytes(rec, name::FUEL, get(3)),
    }
    text_or_bytes(rec, name::TEMPERATURES, get(4));
    for t in as_str(4).unwrap_or("").split('|') {
        let (Some(index), Some(value)) = (t.get(..2).and_then(hex), t.get(2..6).and_then(hex))
        else {
            continue;
        };
        if protocol_version.is_some_and(|p| p >= 3) {
            // Signed hundredths of a degree.
            rec.derived(
                name::temperature(index),
                V::Int(i64::from(value as u16 as i16)),
            );
        } else {
            // Older firmware: a signed whole degree, then hundredths of it.
            let whole = f64::from((value >> 8) as u8 as i8);
            let frac = (value & 0xFF) as f64 * 0.01;
            let c = if whole < 0.0 {
                whole - frac
            } else {
                whole + frac
            };
            rec.derived(name::temperature_legacy(index), V::Double(c));
        }
    }
    match as_str(5).filter(|s| digits(s)).map(str::parse::<u64>) {
        Some(Ok(c)) => rec.named(name::DATA_COUNT, V::Uint(c, 8)),
        _ => text_or_bytes(rec, name::DATA_COUNT, get(5)),
    }
    for (i, d) in rest.iter().skip(6).take(MAX_DATA_FIELDS).enumerate() {
        text_or_bytes(rec, name::data(i + 1), d);
    }
    if rest.len() > 6 + MAX_DATA_FIELDS {
        text_or_bytes(
            rec,
            name::DATA_REST,
            &rest[6 + MAX_DATA_FIELDS..].join(&b","[..]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Key;

    fn get<'a>(r: &'a Record, n: &str) -> Option<&'a V> {
        r.get(&Key::Name(n.to_string().into()))
    }

    #[test]
    fn a_full_report() {
        let r = parse(b"35,-33.866423,151.190060,121208020649,A,7,27,0,32,4,13,6150,49517,505|2|0B67|5A6C,0000,0000|0000|0000|0977|0000,,", false).unwrap();
        let p = r.position.unwrap();
        assert_eq!(
            (p.latitude, p.longitude, p.valid),
            (-33.866423, 151.19006, true)
        );
        assert_eq!(
            (p.satellites, p.hdop, p.altitude),
            (Some(7), Some(4.0), Some(13.0))
        );
        assert_eq!(r.time, Some(1_354_932_409));
        assert_eq!(r.cells[0].lac, 0x0B67);
        assert_eq!(r.cells[0].cell_id, 0x5A6C);
        assert_eq!(r.cells[0].signal, Some(27));
        assert_eq!(get(&r, "ad4"), Some(&V::Uint(0x977, 8)));
        assert_eq!(get(&r, "ad5"), Some(&V::Uint(0, 8)));
        assert_eq!(get(&r, "mileage"), Some(&V::Uint(6150, 8)));
        assert_eq!(get(&r, "event_data"), None, "empty fields are absent");
    }

    #[test]
    fn volts_form_fuel_and_temperatures() {
        let r = parse(b"35,-1.264865,36.800705,211001105240,A,9,20,41.0,323,1,1697,1,0,000|00||,0000,4.33|12.96|1.92|2.72|2.69,0.000000|0|0.000000,", false).unwrap();
        assert_eq!(get(&r, "power_voltage"), Some(&V::Double(12.96)));
        assert_eq!(get(&r, "gps_voltage"), Some(&V::Double(2.69)));
        assert!(r.cells.is_empty(), "MCC 0 names no cell");
        let r = parse(b"35,34.516428,10.470160,170915154043,A,9,12,68,74,0.9,9,1988259,525882,605|2|008C|0007B5A6,0200,0003|0000|0000|01A6|0571,00000001,,3,4C21,06FB2E,360,511", false).unwrap();
        assert_eq!(get(&r, "fuel"), Some(&V::Uint(0x4C21, 2)));
        assert_eq!(get(&r, "fuel_percent"), Some(&V::Double(76.33)));
        assert_eq!(get(&r, "temperature_6"), Some(&V::Int(-1234)));
        assert_eq!(get(&r, "data_count"), Some(&V::Uint(360, 8)));
        assert_eq!(get(&r, "data_1"), Some(&V::Text("511".into())));
        let r = parse(b"3,37.040231,10.042391,160412151656,A,10,11,0,48,0.8,21,1035518,774980,605|2|0010|307B,0400,0000|0000|0000|0A47|03E3,,,1,0000,001206", false).unwrap();
        assert_eq!(get(&r, "temperature_legacy_0"), Some(&V::Double(18.06)));
        let r = parse(b"3,37.0,10.0,160412151656,A,10,11,0,48,0.8,21,1,7,605|2|0010|307B,0400,0|0|0|0|0,,,1,0000,01F005", false).unwrap();
        assert_eq!(get(&r, "temperature_legacy_1"), Some(&V::Double(-16.05)));
    }

    #[test]
    fn aff_has_a_serial_and_event_37_a_card() {
        let r = parse(b"0004,37,58.588926,16.180473,140928192856,A,10,27,0,161,1.2,19,1648894,435695,240|24|88B9|E435,0000,|||0A22|0000,00 12 34|,,50", true).unwrap();
        assert_eq!(get(&r, "serial"), Some(&V::Text("0004".into())));
        assert_eq!(get(&r, "event_code"), Some(&V::Uint(37, 8)));
        assert_eq!(get(&r, "driver_card"), Some(&V::Text("001234".into())));
        assert_eq!(get(&r, "ad4"), Some(&V::Uint(0x0A22, 8)));
        assert_eq!(get(&r, "ad1"), None);
    }

    #[test]
    fn zero_coordinates_are_a_status_record() {
        let r = parse(b"35,0.000000,0.000000,090215000318,V,0,31,0,0,0,0,0,733,302|720|3EE4|BBB5,0000,0006|0006||028C|0000,", false).unwrap();
        assert!(r.position.is_none());
        assert_eq!(get(&r, "satellites"), Some(&V::Uint(0, 8)));
    }

    #[test]
    fn broken_reports_are_refused_with_the_field() {
        let ok = "35,-1.0,36.8,150307132846,A,11,20,0.2,0,5,1767,84045888,36496633,639|02|100E|844,1234,0018|||025D|00CB,";
        assert!(parse(ok.as_bytes(), false).is_ok());
        for (from, to, field) in [
            ("-1.0", "-91.0", "coordinates"),
            ("150307132846", "151307132846", "date_time"),
            (",A,", ",X,", "validity"),
            ("1234,", "12G4,", "io_status"),
            ("639|02|100E|844", "639|02|100E", "base_station"),
            ("84045888", "8404x888", "mileage"),
        ] {
            let t = ok.replacen(from, to, 1);
            match parse(t.as_bytes(), false) {
                Err(ReportError::Field(f, _)) => assert_eq!(f, field, "{t}"),
                other => panic!("{t}: {other:?}"),
            }
        }
        assert_eq!(
            parse(b"35,1.0,2.0", false),
            Err(ReportError::TooFewFields(3))
        );
        assert_eq!(
            parse(&ok.replacen("A,11", "\u{e9},11", 1).into_bytes(), false),
            Err(ReportError::NotText)
        );
        // Optional fields may be any bytes: kept, the report still read.
        let mut b = ok.as_bytes().to_vec();
        b.extend_from_slice(b"\xff\xfe,x");
        let r = parse(&b, false).unwrap();
        assert_eq!(get(&r, "event_data"), Some(&V::Bytes(vec![0xff, 0xfe])));
        assert_eq!(get(&r, "sensor"), Some(&V::Text("x".into())));
    }
}
