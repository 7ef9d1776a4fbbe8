//! Commands: the platform messages the gateway writes for typed and custom command requests,
//! and the terminal's answers to them.
//!
//! | request | message |
//! | --- | --- |
//! | CUSTOM text | `8300` text (flag `01`; the 2019 form adds text type 1), or the `text_command` dialect: `8900` pass-through `F0` + text (Jimi JC models), `8103` parameter `F030` (AOVX AT pass-through) |
//! | CUSTOM payload | one whole JT/T 808 frame, written as is (checked: delimiters, escapes, check byte, header) |
//! | ENGINE_STOP / ENGINE_RESUME | `8500` vehicle control, control flag 1 / 0; or the `engine_control` dialect: `8105` command word `F0` / `F1`, or `64` / `65` |
//! | POSITION_REQUEST | `8201` location query |
//! | REBOOT | `8105` command word 4 (terminal reset) |
//! | SET_REPORT_INTERVAL | `8103` parameter `0029` (default time report interval, seconds) |
//! | OUTPUT_SET | not supported: the standard has no output control |
//!
//! Every command carries a fresh platform serial. The terminal answers with `0001` (answered
//! serial, answered id, result), or with the message's own answer (`0201` for `8201`, `0500`
//! for `8500`, `0104` for `8104`, `1300` for a text): each echoes the serial, so the answer's
//! tag is `(message id << 16) | serial` of the command it answers ([`tag`]).
//!
//! Texts are GBK on the wire; the gateway encodes ASCII only (GBK's ASCII subset) and refuses
//! other characters rather than sending mojibake.

use bytes::Bytes;

use super::frame::{self, Addressee, Split, MAX_BODY};
use crate::protocol::{check_command_text, CommandError, CommandRequest};

/// Platform message ids.
pub const TEXT: u16 = 0x8300;
pub const TERMINAL_CONTROL: u16 = 0x8105;
pub const VEHICLE_CONTROL: u16 = 0x8500;
pub const LOCATION_QUERY: u16 = 0x8201;
pub const SET_PARAMETERS: u16 = 0x8103;
pub const QUERY_PARAMETERS: u16 = 0x8104;
pub const PASSTHROUGH_DOWN: u16 = 0x8900;

/// `8105` command word: terminal reset.
const RESET: u8 = 4;
/// `8103` parameter: default time report interval (s).
const PARAM_REPORT_INTERVAL: u32 = 0x0029;
/// `8103` parameter some AOVX firmware takes an AT command in.
const PARAM_AT_PASSTHROUGH: u32 = 0xF030;
/// `8300` flag: bit 0 (emergency), the flag models that take text commands act on.
const TEXT_FLAG: u8 = 0x01;
/// 2019 `8300` text type: notice.
const TEXT_TYPE_NOTICE: u8 = 1;
/// `8900` pass-through type some models take text commands in.
const PASSTHROUGH_TEXT: u8 = 0xF0;

/// The tag an answer to message `id` with serial `serial` carries.
pub fn tag(id: u16, serial: u16) -> u32 {
    u32::from(id) << 16 | u32::from(serial)
}

/// How engine stop / resume are written (the `engine_control` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineControl {
    /// `8500`, control flag 1 = cut, 0 = restore.
    VehicleControl,
    /// `8105` command word `F0` / `F1`.
    TerminalF0,
    /// `8105` command word `64` / `65`.
    Terminal64,
}

impl EngineControl {
    pub const CHOICES: &'static [&'static str] = &["8500", "8105-f0", "8105-64"];

    pub fn from_setting(s: &str) -> EngineControl {
        match s {
            "8105-f0" => EngineControl::TerminalF0,
            "8105-64" => EngineControl::Terminal64,
            _ => EngineControl::VehicleControl,
        }
    }
}

/// How CUSTOM texts are written (the `text_command` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCommand {
    /// `8300` text message.
    Text,
    /// `8900` pass-through, type `F0`.
    Passthrough,
    /// `8103` parameter `F030`.
    AtParameter,
}

impl TextCommand {
    pub const CHOICES: &'static [&'static str] = &["8300", "8900-f0", "8103-f030"];

    pub fn from_setting(s: &str) -> TextCommand {
        match s {
            "8900-f0" => TextCommand::Passthrough,
            "8103-f030" => TextCommand::AtParameter,
            _ => TextCommand::Text,
        }
    }
}

/// The command dialect of a session (from the protocol settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub engine: EngineControl,
    pub text: TextCommand,
}

/// An encoded command and the tag its answer will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Bytes,
    pub tag: u32,
}

/// Encodes `request` for the device at `to` with platform serial `serial`.
pub fn encode(
    request: &CommandRequest,
    to: &Addressee,
    serial: u16,
    dialect: Dialect,
) -> Result<Encoded, CommandError> {
    let framed = |id: u16, body: &[u8]| Encoded {
        bytes: frame::encode(id, to, serial, body),
        tag: tag(id, serial),
    };
    Ok(match request {
        CommandRequest::Text(text) => {
            let t = ascii_text(text)?;
            match dialect.text {
                TextCommand::Text => {
                    let mut body = vec![TEXT_FLAG];
                    if to.version.is_some() {
                        body.push(TEXT_TYPE_NOTICE);
                    }
                    fits(body.len() + t.len())?;
                    body.extend_from_slice(t);
                    framed(TEXT, &body)
                }
                TextCommand::Passthrough => {
                    fits(1 + t.len())?;
                    let mut body = vec![PASSTHROUGH_TEXT];
                    body.extend_from_slice(t);
                    framed(PASSTHROUGH_DOWN, &body)
                }
                TextCommand::AtParameter => {
                    let len = u8::try_from(t.len()).map_err(|_| {
                        CommandError::Invalid("an AT parameter holds at most 255 bytes".into())
                    })?;
                    let mut body = vec![1];
                    body.extend_from_slice(&PARAM_AT_PASSTHROUGH.to_be_bytes());
                    body.push(len);
                    body.extend_from_slice(t);
                    framed(SET_PARAMETERS, &body)
                }
            }
        }
        CommandRequest::Payload(p) => payload(p)?,
        CommandRequest::EngineStop | CommandRequest::EngineResume => {
            let stop = matches!(request, CommandRequest::EngineStop);
            match dialect.engine {
                EngineControl::VehicleControl => framed(VEHICLE_CONTROL, &[u8::from(stop)]),
                EngineControl::TerminalF0 => {
                    framed(TERMINAL_CONTROL, &[if stop { 0xF0 } else { 0xF1 }])
                }
                EngineControl::Terminal64 => {
                    framed(TERMINAL_CONTROL, &[if stop { 0x64 } else { 0x65 }])
                }
            }
        }
        CommandRequest::PositionRequest => framed(LOCATION_QUERY, &[]),
        CommandRequest::Reboot => framed(TERMINAL_CONTROL, &[RESET]),
        CommandRequest::SetReportInterval { seconds } => {
            let mut body = vec![1];
            body.extend_from_slice(&PARAM_REPORT_INTERVAL.to_be_bytes());
            body.push(4);
            body.extend_from_slice(&seconds.to_be_bytes());
            framed(SET_PARAMETERS, &body)
        }
        CommandRequest::OutputSet { .. } => {
            return Err(CommandError::UnsupportedType(
                "OUTPUT_SET: JT/T 808 has no standard output control; send the frame the \
                 model documents as a CUSTOM payload"
                    .into(),
            ))
        }
    })
}

fn ascii_text(text: &str) -> Result<&[u8], CommandError> {
    if text.is_empty() {
        return Err(CommandError::Invalid("an empty text".into()));
    }
    check_command_text(text)?;
    if !text.is_ascii() {
        return Err(CommandError::Invalid(
            "JT/T 808 texts are GBK; the gateway sends ASCII only (no GBK encoder)".into(),
        ));
    }
    Ok(text.as_bytes())
}

fn fits(len: usize) -> Result<(), CommandError> {
    if len > MAX_BODY {
        return Err(CommandError::Invalid(format!(
            "the body would be {len} bytes; one message carries at most {MAX_BODY}"
        )));
    }
    Ok(())
}

/// A CUSTOM payload: exactly one whole frame, which is written as is. Its header's id and
/// serial tag the answer.
fn payload(p: &[u8]) -> Result<Encoded, CommandError> {
    match frame::split(p, p.len().max(2)) {
        Split::Message(m, n) if n == p.len() => Ok(Encoded {
            bytes: Bytes::copy_from_slice(p),
            tag: tag(m.header.id, m.header.serial),
        }),
        Split::Message(..) => Err(CommandError::Invalid(
            "a JT/T 808 payload is one whole frame; bytes follow it".into(),
        )),
        other => Err(CommandError::Invalid(format!(
            "a JT/T 808 payload is one whole frame 7E…7E with a valid check byte and header ({other:?})"
        ))),
    }
}

/// The words of a terminal general answer's result.
pub fn result_text(result: u8) -> &'static str {
    match result {
        0 => "success",
        1 => "failure",
        2 => "message error",
        3 => "not supported",
        4 => "alarm confirmed",
        _ => "unknown result",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jt808::frame::Terminal;

    fn to(id: &str) -> Addressee {
        Addressee {
            version: None,
            terminal: Terminal::from_id(id).unwrap(),
        }
    }

    fn hex(b: &Bytes) -> String {
        hex::encode(b)
    }

    const F0: Dialect = Dialect {
        engine: EngineControl::TerminalF0,
        text: TextCommand::Text,
    };

    #[test]
    fn traccar_encoder_vectors() {
        // Jt808ProtocolEncoderTest: IMEI 123456789012345 is 0b3a73ce2ff2, serial 0.
        let t = to("123456789012345");
        let e = encode(&CommandRequest::EngineStop, &t, 0, F0).unwrap();
        assert_eq!(hex(&e.bytes), "7e810500010b3a73ce2ff20000f0247e");
        assert_eq!(e.tag, 0x8105_0000);
        let e = encode(
            &CommandRequest::Text("Test, Command, 123#".into()),
            &t,
            0,
            F0,
        )
        .unwrap();
        assert_eq!(
            hex(&e.bytes),
            "7e830000140b3a73ce2ff2000001546573742c20436f6d6d616e642c2031323323a57e"
        );
        let jimi = Dialect {
            engine: EngineControl::VehicleControl,
            text: TextCommand::Passthrough,
        };
        let e = encode(&CommandRequest::Text("TEST".into()), &t, 0, jimi).unwrap();
        assert_eq!(hex(&e.bytes), "7e890000050b3a73ce2ff20000f0544553543b7e");
        // A payload is a whole frame, written as is, tagged by its own header.
        let p =
            hex::decode("7e830000140b3a73ce2ff2000001546573742c20436f6d6d616e642c2031323323a57e")
                .unwrap();
        let e = encode(&CommandRequest::Payload(p.clone().into()), &t, 9, F0).unwrap();
        assert_eq!(&e.bytes[..], &p[..]);
        assert_eq!(e.tag, 0x8300_0000);
    }

    #[test]
    fn typed_commands_exact_bytes() {
        let t = to("013912345678");
        let d = Dialect {
            engine: EngineControl::VehicleControl,
            text: TextCommand::Text,
        };
        let x = |r: CommandRequest, serial| hex(&encode(&r, &t, serial, d).unwrap().bytes);
        assert_eq!(
            x(CommandRequest::EngineStop, 7),
            "7e85000001013912345678000701b27e"
        );
        assert_eq!(
            x(CommandRequest::EngineResume, 8),
            "7e85000001013912345678000800bc7e"
        );
        assert_eq!(
            x(CommandRequest::PositionRequest, 9),
            "7e820100000139123456780009ba7e"
        );
        assert_eq!(
            x(CommandRequest::Reboot, 10),
            "7e81050001013912345678000a04bb7e"
        );
        assert_eq!(
            x(CommandRequest::SetReportInterval { seconds: 30 }, 11),
            "7e8103000a013912345678000b0100000029040000001e817e"
        );
        let e = encode(&CommandRequest::OutputSet { index: 1, on: true }, &t, 0, d);
        assert!(matches!(e, Err(CommandError::UnsupportedType(_))));
        let d64 = Dialect {
            engine: EngineControl::Terminal64,
            ..d
        };
        assert_eq!(
            hex(&encode(&CommandRequest::EngineResume, &t, 1, d64)
                .unwrap()
                .bytes),
            "7e81050001013912345678000165d17e"
        );
        let at = Dialect {
            text: TextCommand::AtParameter,
            ..d
        };
        assert_eq!(
            hex(&encode(&CommandRequest::Text("AT".into()), &t, 2, at)
                .unwrap()
                .bytes),
            "7e810300080139123456780002010000f0300241546e7e"
        );
    }

    #[test]
    fn the_2019_form_and_refused_texts_and_payloads() {
        let t = Addressee {
            version: Some(1),
            terminal: Terminal::from_id_2019("356307042441013").unwrap(),
        };
        let d = Dialect {
            engine: EngineControl::VehicleControl,
            text: TextCommand::Text,
        };
        let e = encode(&CommandRequest::Text("hi".into()), &t, 3, d).unwrap();
        let m = match frame::split(&e.bytes, 4096) {
            Split::Message(m, _) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.header.version, Some(1));
        assert_eq!(m.body, vec![TEXT_FLAG, TEXT_TYPE_NOTICE, b'h', b'i']);
        for bad in ["", "a\nb", "你好", &"x".repeat(MAX_BODY + 1)] {
            assert!(
                matches!(
                    encode(&CommandRequest::Text(bad.into()), &t, 0, d),
                    Err(CommandError::Invalid(_))
                ),
                "{bad:.20}"
            );
        }
        for bad in [&b"\x7e\x7e"[..], b"junk", b"\x7e\x80\x01\x7e"] {
            assert!(matches!(
                encode(
                    &CommandRequest::Payload(Bytes::copy_from_slice(bad)),
                    &t,
                    0,
                    d
                ),
                Err(CommandError::Invalid(_))
            ));
        }
    }
}
