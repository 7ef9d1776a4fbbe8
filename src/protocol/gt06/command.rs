//! Command traffic: the online command the server sends (`0x80`) and the device's replies
//! (`0x15` ASCII, `0x21` ASCII or UTF-16BE), which carry the server flag back: a reply is a
//! COMMAND_RESPONSE event with the answer in `text` (raw: `server_flag`, `encoding`) and a
//! typed [`CommandAnswer`] tagged with the flag, which the session's command tracker matches
//! to its command.

use std::borrow::Cow;

use bytes::Bytes;

use super::block;
use super::frame;
use super::mapping::name;
use crate::event::raw;
use crate::proto::{EventKind, Position, TelemetryEvent};
use crate::protocol::cursor::Cursor;
use crate::protocol::{AnswerOutcome, CommandAnswer, CommandError, CommandRequest};

/// Online command protocol number.
pub const ONLINE_COMMAND: u8 = 0x80;
/// Language field of the online command: English.
pub const LANGUAGE_ENGLISH: u16 = 0x0002;
/// Longest command text: the u8 length field counts the 4-byte server flag too, and the
/// whole content (length, flag, text, language) must fit the u8 frame length with the
/// protocol number, serial and CRC (5 bytes).
pub const MAX_COMMAND_LEN: usize = 255 - 5 - 1 - 4 - 2;

/// Longest `TIMER` interval the family takes, seconds.
pub const MAX_TIMER_SECS: u32 = 18_000;

/// The online-command text a request stands for, as Concox documents it and Traccar sends it:
/// ENGINE_STOP `Relay,1#`, ENGINE_RESUME `Relay,0#` (models that take `DYD,<password>#` /
/// `HFYD,<password>#` instead get them from their device profile's command templates),
/// POSITION_REQUEST `WHERE#`, REBOOT `RESET#`, SET_REPORT_INTERVAL `TIMER,<seconds>#` (the
/// interval while the ignition is on). CUSTOM text as given; OUTPUT_SET and raw bytes are not
/// carried (one relay, switched by the engine commands; no binary command channel).
pub fn text(request: &CommandRequest) -> Result<Cow<'_, str>, CommandError> {
    Ok(match request {
        CommandRequest::Text(t) => Cow::Borrowed(t.as_str()),
        CommandRequest::Payload(_) => {
            return Err(CommandError::UnsupportedType(
                "GT06 online commands are text: send a CUSTOM command's `text`, not `payload`"
                    .into(),
            ))
        }
        CommandRequest::EngineStop => Cow::Borrowed("Relay,1#"),
        CommandRequest::EngineResume => Cow::Borrowed("Relay,0#"),
        CommandRequest::PositionRequest => Cow::Borrowed("WHERE#"),
        CommandRequest::Reboot => Cow::Borrowed("RESET#"),
        CommandRequest::SetReportInterval { seconds } => {
            if *seconds > MAX_TIMER_SECS {
                return Err(CommandError::Invalid(format!(
                    "SET_REPORT_INTERVAL {seconds}: GT06 TIMER takes at most {MAX_TIMER_SECS} s"
                )));
            }
            Cow::Owned(format!("TIMER,{seconds}#"))
        }
        CommandRequest::OutputSet { .. } => {
            return Err(CommandError::UnsupportedType(
                "OUTPUT_SET is not carried by GT06: its one relay is switched by ENGINE_STOP / ENGINE_RESUME"
                    .into(),
            ))
        }
    })
}

/// Builds an online command frame: content = length of (flag + text) u8, server flag u32,
/// ASCII text, language u16 (English).
pub fn encode_online(text: &str, server_flag: u32, serial: u16) -> Result<Bytes, CommandError> {
    if text.is_empty() || !text.is_ascii() || text.len() > MAX_COMMAND_LEN {
        return Err(CommandError::Invalid(format!(
            "GT06 commands are 1..={MAX_COMMAND_LEN} ASCII characters"
        )));
    }
    crate::protocol::check_command_text(text)?;
    let len = u8::try_from(4 + text.len())
        .map_err(|_| CommandError::Invalid("command too long".into()))?;
    let mut content = Vec::with_capacity(7 + text.len());
    content.push(len);
    content.extend_from_slice(&server_flag.to_be_bytes());
    content.extend_from_slice(text.as_bytes());
    content.extend_from_slice(&LANGUAGE_ENGLISH.to_be_bytes());
    Ok(frame::encode(false, ONLINE_COMMAND, &content, serial))
}

fn response_event(flag: u32, text: &str) -> (TelemetryEvent, CommandAnswer) {
    let mut e = block::event(EventKind::CommandResponse);
    block::put(&mut e, name::SERVER_FLAG, flag);
    e.text = Some(text.to_string());
    let answer = CommandAnswer {
        tag: Some(flag),
        outcome: AnswerOutcome::Text(text.to_string()),
    };
    (e, answer)
}

/// `0x15`: length of (flag + text) u8, server flag u32, ASCII text, then language u16.
/// A length that overruns the content is cut to what is there.
pub fn response_ascii(content: &[u8]) -> Option<(TelemetryEvent, CommandAnswer)> {
    let mut c = Cursor::new(content);
    let len = usize::from(c.u8()?);
    let flag = c.u32()?;
    let n = len.saturating_sub(4).min(c.remaining());
    let text = String::from_utf8_lossy(c.take(n)?).into_owned();
    let (mut e, answer) = response_event(flag, &text);
    // Some models answer the ICCID query unprompted in this form: `<ICCID:8988...>`.
    if let Some(iccid) = text.strip_prefix("<ICCID:") {
        e.raw
            .push(raw::string(name::ICCID, iccid.trim_end_matches('>')));
    }
    if let Some(l) = c.u16() {
        block::put(&mut e, name::LANGUAGE, l);
    }
    block::put_tail(&c, &mut e);
    Some((e, answer))
}

/// `0x21`: server flag u32, encoding u8 (1 = ASCII, otherwise UTF-16BE), text to the end.
/// A text that is a location (`Current position!...`) makes the event a POSITION.
pub fn response_encoded(content: &[u8]) -> Option<(TelemetryEvent, CommandAnswer)> {
    let mut c = Cursor::new(content);
    let flag = c.u32()?;
    let encoding = c.u8()?;
    let bytes = c.rest();
    let text = if encoding == 1 {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .filter_map(|p| <[u8; 2]>::try_from(p).ok())
            .map(u16::from_be_bytes)
            .collect();
        String::from_utf16_lossy(&units)
    };
    let position = current_position(&text);
    let (mut e, answer) = response_event(flag, &text);
    block::put(&mut e, name::ENCODING, encoding);
    if let Some((p, secs)) = position {
        e.position = Some(p);
        e.device_time = secs.map(crate::event::timestamp_secs);
        e.kind = EventKind::Position as i32;
    }
    Some((e, answer))
}

/// The answer to a location query some models send as text: `Current position!Lat:N54.739332,
/// Lon:E25.273270,Course:126.53,Speed:0.0000,DateTime:2017-05-26  10:27:47` (speed km/h).
fn current_position(text: &str) -> Option<(Position, Option<i64>)> {
    let rest = text.strip_prefix("Current position!")?;
    let mut fields = rest.split(',');
    let mut field = |name: &str| fields.next()?.strip_prefix(name).map(str::trim);
    let coord = |v: &str, neg: char| -> Option<f64> {
        let (hemi, num) = v.split_at_checked(1)?;
        let n: f64 = num.parse().ok()?;
        Some(if hemi.starts_with(neg) { -n } else { n })
    };
    let lat = coord(field("Lat:")?, 'S')?;
    let lon = coord(field("Lon:")?, 'W')?;
    let course: f64 = field("Course:")?.parse().ok()?;
    let speed: f64 = field("Speed:")?.parse().ok()?;
    let when = field("DateTime:")?;
    let date = when.split_whitespace().collect::<Vec<_>>();
    let secs = match date[..] {
        [d, t] => {
            let y: i64 = d.get(..4)?.parse().ok()?;
            let (mo, da) = (d.get(5..7)?.parse().ok()?, d.get(8..10)?.parse().ok()?);
            let (h, mi, s) = (
                t.get(..2)?.parse().ok()?,
                t.get(3..5)?.parse().ok()?,
                t.get(6..8)?.parse().ok()?,
            );
            block::civil_to_secs(y, mo, da, h, mi, s)
        }
        _ => None,
    };
    if !(lat.abs() <= 90.0 && lon.abs() <= 180.0) {
        return None;
    }
    Some((
        Position {
            latitude: lat,
            longitude: lon,
            course: Some(course),
            speed: Some(speed),
            valid: true,
            ..Default::default()
        },
        secs,
    ))
}
