//! Codec 12, 13 and 14: text commands to the device and its answers, and the command texts
//! typed commands become.
//!
//! Layout inside the TCP envelope (`data`):
//! - Codec 12: `0C 01 <type> <size u32> <text> 01`, type `05` command, `06` response.
//! - Codec 13: `0D 01 05 <size u32> <timestamp u32 s> <text> 01` (size counts the timestamp).
//! - Codec 14: `0E 01 <type> <size u32> <imei 8 bytes BCD> <text> 01` (size counts the IMEI);
//!   type `05` command, `06` ACK with the answer, `11` nACK (IMEI mismatch).

use std::borrow::Cow;

use crate::protocol::cursor::Cursor;
use crate::protocol::{CommandError, CommandRequest};

/// Digital outputs `setdigout` addresses at most (FMB640-class devices have four).
pub const MAX_OUTPUTS: u8 = 4;
/// Longest report interval taken, seconds (the FMB "Min Period" parameters' range).
pub const MAX_INTERVAL_SECS: u32 = 2_592_000;

/// FMB configuration parameters a report interval sets, in every operator mode (home network,
/// roaming, unknown operator), for the *moving* state: `Min Period` (10050, 10150, 10250: a
/// record every N s), `Min Saved Records` (10054, 10154, 10254: set to 1, so each record is
/// sent) and `Send Period` (10055, 10155, 10255: sent every N s). Ids from Teltonika's FMB
/// parameter list (Data Acquisition); the on-stop ones (100x0/100x5) are left alone.
pub const INTERVAL_PARAMETERS: [(u32, u32, u32); 3] = [
    (10050, 10054, 10055),
    (10150, 10154, 10155),
    (10250, 10254, 10255),
];

/// The command text a request stands for, as Teltonika's SMS/GPRS command set writes it
/// (GPRS commands take no password): ENGINE_STOP `setdigout 1`, ENGINE_RESUME `setdigout 0`
/// (the first output, as Traccar sends them); OUTPUT_SET `setdigout` with `?` for the outputs
/// it leaves alone (`setdigout ??1` switches the third on); POSITION_REQUEST `getgps`; REBOOT
/// `cpureset`; SET_REPORT_INTERVAL `setparam` of [`INTERVAL_PARAMETERS`]. CUSTOM as given.
pub fn text(request: &CommandRequest) -> Result<Cow<'_, [u8]>, CommandError> {
    Ok(match request {
        CommandRequest::Text(t) => Cow::Borrowed(t.as_bytes()),
        CommandRequest::Payload(p) => Cow::Borrowed(&p[..]),
        CommandRequest::EngineStop => Cow::Borrowed(b"setdigout 1"),
        CommandRequest::EngineResume => Cow::Borrowed(b"setdigout 0"),
        CommandRequest::PositionRequest => Cow::Borrowed(b"getgps"),
        CommandRequest::Reboot => Cow::Borrowed(b"cpureset"),
        CommandRequest::OutputSet { index, on } => {
            if *index > MAX_OUTPUTS {
                return Err(CommandError::UnsupportedType(format!(
                    "OUTPUT_SET {index}: Teltonika's setdigout addresses outputs 1 to {MAX_OUTPUTS}"
                )));
            }
            let mut t = String::from("setdigout ");
            for _ in 1..*index {
                t.push('?');
            }
            t.push(if *on { '1' } else { '0' });
            Cow::Owned(t.into_bytes())
        }
        CommandRequest::SetReportInterval { seconds } => {
            if *seconds > MAX_INTERVAL_SECS {
                return Err(CommandError::Invalid(format!(
                    "SET_REPORT_INTERVAL {seconds}: at most {MAX_INTERVAL_SECS} s on Teltonika"
                )));
            }
            let pairs: Vec<String> = INTERVAL_PARAMETERS
                .iter()
                .map(|(period, records, send)| {
                    format!("{period}:{seconds};{records}:1;{send}:{seconds}")
                })
                .collect();
            Cow::Owned(format!("setparam {}", pairs.join(";")).into_bytes())
        }
    })
}

/// A command-codec message from the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Codec 12 response (type 06).
    Response { text: Vec<u8> },
    /// Codec 13 message with its device timestamp (seconds).
    Timestamped { timestamp_secs: u32, text: Vec<u8> },
    /// Codec 14 ACK with the answer text, addressed to `imei`.
    AddressedResponse { imei: String, text: Vec<u8> },
    /// Codec 14 nACK: the command's IMEI did not match the device.
    AddressedNack { imei: String },
    /// A command sent *to* the server (type 05 in Codec 12/14): not expected from devices.
    Command { text: Vec<u8> },
}

/// Why command-codec data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Malformed(&'static str),
    /// A well-formed message of a type the gateway does not handle (camera type `0x0D`, …).
    #[error("codec {codec:#04x} message type {kind:#04x} is not supported")]
    UnknownType { codec: u8, kind: u8 },
}

impl From<&'static str> for ParseError {
    fn from(s: &'static str) -> Self {
        ParseError::Malformed(s)
    }
}

/// Parses command-codec data (codec id .. trailing quantity).
pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
    let mut c = Cursor::new(data);
    let codec = c.u8().ok_or("truncated")?;
    let q1 = c.u8().ok_or("truncated")?;
    let kind = c.u8().ok_or("truncated")?;
    let size = c.u32().ok_or("truncated")? as usize;
    if size > c.remaining() {
        return Err("size field exceeds the frame".into());
    }
    let body = c.take(size).ok_or("truncated")?;
    let q2 = c.u8().ok_or("missing trailing quantity")?;
    if q1 != 1 || q2 != 1 {
        return Err("command quantity must be 1".into());
    }
    if c.remaining() != 0 {
        return Err("bytes after the trailing quantity".into());
    }
    match (codec, kind) {
        (0x0C, 0x06) => Ok(Message::Response {
            text: body.to_vec(),
        }),
        (0x0C, 0x05) | (0x0E, 0x05) => Ok(Message::Command {
            text: body
                .get(if codec == 0x0E { 8 } else { 0 }..)
                .unwrap_or_default()
                .to_vec(),
        }),
        // Codec 13 is documented with type 05; devices answering a command use 06.
        (0x0D, 0x05) | (0x0D, 0x06) => {
            let mut b = Cursor::new(body);
            let timestamp_secs = b.u32().ok_or("Codec 13 body shorter than its timestamp")?;
            Ok(Message::Timestamped {
                timestamp_secs,
                text: b.rest().to_vec(),
            })
        }
        (0x0E, 0x06) | (0x0E, 0x11) => {
            let mut b = Cursor::new(body);
            let imei = b.take(8).ok_or("Codec 14 body shorter than its IMEI")?;
            let imei = imei_from_bcd(imei);
            if kind == 0x11 {
                Ok(Message::AddressedNack { imei })
            } else {
                Ok(Message::AddressedResponse {
                    imei,
                    text: b.rest().to_vec(),
                })
            }
        }
        _ => Err(ParseError::UnknownType { codec, kind }),
    }
}

/// Codec 12 command data (`0C 01 05 <size> <text> 01`), to be wrapped by `frame::encode_tcp`.
pub fn encode_codec12(kind: u8, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    out.extend_from_slice(&[0x0C, 0x01, kind]);
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text);
    out.push(0x01);
    out
}

/// Codec 14 command data addressed to `imei` (15 or 16 digits, packed as 8 bytes of BCD with
/// a leading zero nibble for 15 digits).
pub fn encode_codec14(kind: u8, imei: &str, text: &[u8]) -> Option<Vec<u8>> {
    let bcd = imei_to_bcd(imei)?;
    let mut out = Vec::with_capacity(text.len() + 16);
    out.extend_from_slice(&[0x0E, 0x01, kind]);
    out.extend_from_slice(&((text.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(&bcd);
    out.extend_from_slice(text);
    out.push(0x01);
    Some(out)
}

fn imei_to_bcd(imei: &str) -> Option<[u8; 8]> {
    if imei.len() > 16 || !imei.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{imei:0>16}");
    let mut out = [0u8; 8];
    for (i, pair) in padded.as_bytes().chunks(2).enumerate() {
        out[i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
    }
    Some(out)
}

fn imei_from_bcd(b: &[u8]) -> String {
    let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    s.trim_start_matches('0').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::teltonika::frame::encode_tcp;

    #[test]
    fn codec12_getinfo_matches_the_spec_example() {
        // Teltonika's Codec 12 example: "getinfo" command.
        let f = encode_tcp(&encode_codec12(0x05, b"getinfo"));
        assert_eq!(
            hex::encode(f),
            "000000000000000f0c010500000007676574696e666f0100004312"
        );
    }

    #[test]
    fn responses_parse() {
        let d = encode_codec12(0x06, b"INI:2019/7/22 7:22 RTC:2019/7/22 7:53");
        assert_eq!(
            parse(&d),
            Ok(Message::Response {
                text: b"INI:2019/7/22 7:22 RTC:2019/7/22 7:53".to_vec()
            })
        );
        let d = encode_codec14(0x06, "352093081429150", b"ok").unwrap();
        assert_eq!(
            parse(&d),
            Ok(Message::AddressedResponse {
                imei: "352093081429150".into(),
                text: b"ok".to_vec()
            })
        );
        let d = encode_codec14(0x11, "352093081429150", b"").unwrap();
        assert_eq!(
            parse(&d),
            Ok(Message::AddressedNack {
                imei: "352093081429150".into()
            })
        );
        let mut d = vec![
            0x0D, 0x01, 0x05, 0, 0, 0, 6, 0x5d, 0x35, 0x4a, 0x1a, b'h', b'i', 0x01,
        ];
        assert_eq!(
            parse(&d),
            Ok(Message::Timestamped {
                timestamp_secs: 0x5d354a1a,
                text: b"hi".to_vec()
            })
        );
        d[6] = 200;
        assert!(parse(&d).is_err());
    }

    #[test]
    fn typed_commands_become_fmb_command_texts() {
        let t = |r: CommandRequest| String::from_utf8(text(&r).unwrap().into_owned()).unwrap();
        assert_eq!(t(CommandRequest::EngineStop), "setdigout 1");
        assert_eq!(t(CommandRequest::EngineResume), "setdigout 0");
        assert_eq!(t(CommandRequest::PositionRequest), "getgps");
        assert_eq!(t(CommandRequest::Reboot), "cpureset");
        assert_eq!(
            t(CommandRequest::OutputSet { index: 1, on: true }),
            "setdigout 1"
        );
        assert_eq!(
            t(CommandRequest::OutputSet {
                index: 3,
                on: false
            }),
            "setdigout ??0"
        );
        assert_eq!(
            t(CommandRequest::SetReportInterval { seconds: 30 }),
            "setparam 10050:30;10054:1;10055:30;10150:30;10154:1;10155:30;10250:30;10254:1;10255:30"
        );
        assert!(
            t(CommandRequest::SetReportInterval { seconds: 86_400 }).len() <= 160,
            "SMS/GPRS command limit"
        );
        assert_eq!(t(CommandRequest::Text("getinfo".into())), "getinfo");
        assert!(matches!(
            text(&CommandRequest::OutputSet { index: 5, on: true }),
            Err(CommandError::UnsupportedType(r)) if r.contains("1 to 4")
        ));
        assert!(text(&CommandRequest::SetReportInterval { seconds: 3_000_000 }).is_err());
        // The framed bytes of one: Codec 12 type 0x05 in the TCP envelope, CRC-16/IBM
        // computed independently of this crate's CRC.
        let f = encode_tcp(&encode_codec12(
            0x05,
            &text(&CommandRequest::EngineStop).unwrap(),
        ));
        assert_eq!(
            hex::encode(f),
            "00000000000000130c01050000000b7365746469676f7574203101000087a2"
        );
    }

    #[test]
    fn codec14_imei_is_bcd_with_leading_zero() {
        assert_eq!(
            imei_to_bcd("352093081429150").unwrap(),
            [0x03, 0x52, 0x09, 0x30, 0x81, 0x42, 0x91, 0x50]
        );
        assert_eq!(
            imei_from_bcd(&[0x03, 0x52, 0x09, 0x30, 0x81, 0x42, 0x91, 0x50]),
            "352093081429150"
        );
    }
}
