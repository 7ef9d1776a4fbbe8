//! Commands to @Track devices: `AT+GT<cmd>=<password>,<parameters…>,<serial>$`. The device
//! answers `+ACK:GT<cmd>,…,<serial>,<send time>,<count>$`, echoing the 4-hex-digit serial,
//! which is the answer's tag ([`crate::protocol::CommandAnswer::tag`]).
//!
//! Typed requests:
//! - `POSITION_REQUEST` → `AT+GTRTO=<pw>,1,,,,,,<serial>$` (sub-command 1, RTL);
//! - `REBOOT` → `AT+GTRTO=<pw>,3,,,,,,<serial>$`;
//! - `ENGINE_STOP` / `ENGINE_RESUME` → output 1 on / off, `OUTPUT_SET` → output *n*, with
//!   `AT+GTOUT`: its 16 parameter fields hold three status/duration/toggle triples (four on a
//!   GV200), then the long-operation and reserved fields. Only the addressed output's triple is
//!   written (`<status>,0,0`: a steady level); the others are left empty, which keeps their
//!   current setting, so switching one output never resets another (Traccar writes `0` into
//!   outputs 2 and 3 with its engine stop);
//! - `SET_REPORT_INTERVAL` → `AT+GTFRI` mode 1 (fixed timing) with the check and send
//!   intervals set to the same value, every other field empty (kept). Its field count differs
//!   per model; only the models whose layout is known are encoded, the others are refused
//!   with a reason (send the whole command as CUSTOM text).
//!
//! `CUSTOM` text is written as given: a complete command whose last field is its serial
//! (`AT+GTRTO=gl300,8,,,,,,0A01`), `$` appended when missing. Protocol Pro devices (the
//! compact binary form) take `AT@` commands only as CUSTOM text.
//!
//! The password is the setting `command_password`: `model` (default) uses the model's
//! factory password, the model's name in lower case (`gv300w`), from the device type its
//! protocol version names; a fixed choice applies to every device.

use bytes::Bytes;

use super::models::Model;
use crate::protocol::{check_command_text, CommandError, CommandRequest};

/// Longest command text accepted (a device's receive buffer; the longest documented commands
/// are well under this).
pub const MAX_COMMAND_LEN: usize = 512;

/// `AT+GTOUT`'s parameter fields (before the serial).
const OUT_FIELDS: usize = 16;

/// `AT+GTFRI`'s parameter count (before the serial), per model; the check and send intervals
/// are fields 7 and 8 in both layouts.
fn fri_fields(model: &Model) -> Option<usize> {
    match model.name {
        "GL200" | "GL300" | "GL300W" | "GL300VC" | "GV300" | "GV300W" | "GV55" | "GV55LITE"
        | "GV55W" | "GV65" | "GV200" | "GMT100" | "GV500" => Some(19),
        "GL320M" => Some(15),
        _ => None,
    }
}

/// What the encoder needs to know about the device.
pub struct Target<'a> {
    pub model: Option<&'static Model>,
    /// The password to use, already resolved from the setting (`None`: the setting is
    /// `model` and the model is unknown).
    pub password: Option<&'a str>,
    /// The device speaks Protocol Pro (compact binary).
    pub pro: bool,
}

/// A command's bytes and the serial its answer will echo.
pub struct Encoded {
    pub bytes: Bytes,
    pub serial: Option<u16>,
}

fn is_serial(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `CUSTOM` text: a whole command ending with its serial.
fn custom(text: &str) -> Result<Encoded, CommandError> {
    check_command_text(text)?;
    let body = text.trim().strip_suffix('$').unwrap_or(text.trim());
    if !(body.starts_with("AT+") || body.starts_with("AT@")) {
        return Err(CommandError::Invalid(
            "a Queclink command starts with `AT+` (or `AT@` on Protocol Pro devices)".into(),
        ));
    }
    if body.len() + 1 > MAX_COMMAND_LEN || body.contains('$') {
        return Err(CommandError::Invalid(format!(
            "a command is one `$`-terminated line of at most {MAX_COMMAND_LEN} characters"
        )));
    }
    let last = body.rsplit(',').next().unwrap_or_default();
    if !is_serial(last) || !body.contains(',') {
        return Err(CommandError::Invalid(
            "end the command with its serial number (4 hex digits), which the device's answer echoes".into(),
        ));
    }
    Ok(Encoded {
        bytes: Bytes::from(format!("{body}$")),
        serial: u16::from_str_radix(last, 16).ok(),
    })
}

fn typed_password<'a>(t: &Target<'a>, what: &str) -> Result<&'a str, CommandError> {
    if t.pro {
        return Err(CommandError::UnsupportedType(format!(
            "Protocol Pro devices take `AT@` commands: send {what} as CUSTOM text"
        )));
    }
    t.password.ok_or_else(|| {
        CommandError::UnsupportedType(format!(
            "the device's model is unknown, so its default command password is too: set `queclink.command_password` or send {what} as CUSTOM text"
        ))
    })
}

/// `AT+GTOUT` switching output `index` (1 = the first).
fn output(
    t: &Target<'_>,
    index: u8,
    on: bool,
    serial: u16,
    what: &str,
) -> Result<Encoded, CommandError> {
    if let Some(m) = t.model {
        if !m.has_outputs() {
            return Err(CommandError::UnsupportedType(format!(
                "{} is a personal tracker without digital outputs (no AT+GTOUT)",
                m.name
            )));
        }
        if index > m.outputs() {
            return Err(CommandError::Invalid(format!(
                "{} has outputs 1..={}",
                m.name,
                m.outputs()
            )));
        }
    } else if index > 3 {
        return Err(CommandError::Invalid(
            "outputs 1..=3 (4 on a GV200; this device's model is unknown)".into(),
        ));
    }
    if index == 0 {
        return Err(CommandError::Invalid("outputs are numbered from 1".into()));
    }
    let pw = typed_password(t, what)?;
    let mut fields = vec![""; OUT_FIELDS];
    let at = usize::from(index - 1) * 3;
    let status = if on { "1" } else { "0" };
    fields[at] = status;
    fields[at + 1] = "0";
    fields[at + 2] = "0";
    Ok(Encoded {
        bytes: Bytes::from(format!("AT+GTOUT={pw},{},{serial:04X}$", fields.join(","))),
        serial: Some(serial),
    })
}

/// Encodes `req` with `serial` (the session's next one).
pub fn encode(req: &CommandRequest, t: &Target<'_>, serial: u16) -> Result<Encoded, CommandError> {
    match req {
        CommandRequest::Text(text) => custom(text),
        CommandRequest::Payload(p) => match std::str::from_utf8(p) {
            Ok(text) => custom(text),
            Err(_) => Err(CommandError::Invalid(
                "Queclink commands are ASCII text".into(),
            )),
        },
        CommandRequest::EngineStop => output(t, 1, true, serial, "ENGINE_STOP"),
        CommandRequest::EngineResume => output(t, 1, false, serial, "ENGINE_RESUME"),
        CommandRequest::OutputSet { index, on } => output(t, *index, *on, serial, "OUTPUT_SET"),
        CommandRequest::PositionRequest | CommandRequest::Reboot => {
            let sub = if matches!(req, CommandRequest::Reboot) {
                3
            } else {
                1
            };
            let pw = typed_password(t, req.type_name())?;
            Ok(Encoded {
                bytes: Bytes::from(format!("AT+GTRTO={pw},{sub},,,,,,{serial:04X}$")),
                serial: Some(serial),
            })
        }
        CommandRequest::SetReportInterval { seconds } => {
            if !(5..=86_400).contains(seconds) {
                return Err(CommandError::Invalid(
                    "the fixed report interval is 5..=86400 seconds".into(),
                ));
            }
            let Some(n) = t.model.and_then(fri_fields) else {
                return Err(CommandError::UnsupportedType(format!(
                    "SET_REPORT_INTERVAL (AT+GTFRI) has a model-specific layout and {} has none known here: send it as CUSTOM text",
                    t.model.map_or("this device's model", |m| m.name)
                )));
            };
            let pw = typed_password(t, "SET_REPORT_INTERVAL")?;
            let mut fields = vec![String::new(); n];
            fields[0] = "1".into();
            fields[6] = seconds.to_string();
            fields[7] = seconds.to_string();
            Ok(Encoded {
                bytes: Bytes::from(format!("AT+GTFRI={pw},{},{serial:04X}$", fields.join(","))),
                serial: Some(serial),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::queclink::models::by_code;

    fn target(code: &str) -> Target<'static> {
        Target {
            model: by_code(code),
            password: Some("gv300"),
            pro: false,
        }
    }

    fn text(req: CommandRequest, t: &Target<'_>) -> String {
        let e = encode(&req, t, 0x0A2F).unwrap();
        assert_eq!(e.serial, Some(0x0A2F));
        String::from_utf8(e.bytes.to_vec()).unwrap()
    }

    #[test]
    fn typed_commands_exact_bytes() {
        let t = target("06");
        assert_eq!(
            text(CommandRequest::PositionRequest, &t),
            "AT+GTRTO=gv300,1,,,,,,0A2F$"
        );
        assert_eq!(
            text(CommandRequest::Reboot, &t),
            "AT+GTRTO=gv300,3,,,,,,0A2F$"
        );
        assert_eq!(
            text(CommandRequest::EngineStop, &t),
            "AT+GTOUT=gv300,1,0,0,,,,,,,,,,,,,,0A2F$"
        );
        assert_eq!(
            text(CommandRequest::EngineResume, &t),
            "AT+GTOUT=gv300,0,0,0,,,,,,,,,,,,,,0A2F$"
        );
        assert_eq!(
            text(CommandRequest::OutputSet { index: 3, on: true }, &t),
            "AT+GTOUT=gv300,,,,,,,1,0,0,,,,,,,,0A2F$"
        );
        assert_eq!(
            text(CommandRequest::SetReportInterval { seconds: 60 }, &t),
            "AT+GTFRI=gv300,1,,,,,,60,60,,,,,,,,,,,,0A2F$"
        );
        let gl320m = Target {
            password: Some("gl320m"),
            ..target("C3")
        };
        assert_eq!(
            text(CommandRequest::SetReportInterval { seconds: 30 }, &gl320m),
            "AT+GTFRI=gl320m,1,,,,,,30,30,,,,,,,,0A2F$"
        );
        // GTOUT's field count is the same for every output layout: 16 before the serial.
        let out = text(
            CommandRequest::OutputSet {
                index: 4,
                on: false,
            },
            &target("04"),
        );
        assert_eq!(out, "AT+GTOUT=gv300,,,,,,,,,,0,0,0,,,,,0A2F$");
        assert_eq!(out.matches(',').count(), 1 + OUT_FIELDS);
    }

    #[test]
    fn refusals_say_why() {
        let t = target("06");
        let err = |req: CommandRequest, t: &Target<'_>| encode(&req, t, 1).err().unwrap();
        assert!(matches!(
            err(CommandRequest::OutputSet { index: 4, on: true }, &t),
            CommandError::Invalid(_)
        ));
        assert!(matches!(
            err(CommandRequest::OutputSet { index: 0, on: true }, &t),
            CommandError::Invalid(_)
        ));
        assert!(matches!(
            err(CommandRequest::SetReportInterval { seconds: 2 }, &t),
            CommandError::Invalid(_)
        ));
        // A personal tracker has no outputs.
        assert!(matches!(
            err(CommandRequest::EngineStop, &target("1A")),
            CommandError::UnsupportedType(_)
        ));
        // An unknown model: no interval layout, no default password.
        let unknown = Target {
            model: None,
            password: None,
            pro: false,
        };
        assert!(matches!(
            err(CommandRequest::SetReportInterval { seconds: 60 }, &unknown),
            CommandError::UnsupportedType(_)
        ));
        assert!(matches!(
            err(CommandRequest::Reboot, &unknown),
            CommandError::UnsupportedType(_)
        ));
        let pro = Target {
            pro: true,
            ..target("8203")
        };
        assert!(matches!(
            err(CommandRequest::Reboot, &pro),
            CommandError::UnsupportedType(_)
        ));
    }

    #[test]
    fn custom_text_carries_its_own_serial() {
        let e = encode(
            &CommandRequest::Text("AT+GTRTO=gl300,8,,,,,,0A01".into()),
            &target("1A"),
            7,
        )
        .unwrap();
        assert_eq!(&e.bytes[..], b"AT+GTRTO=gl300,8,,,,,,0A01$");
        assert_eq!(e.serial, Some(0x0A01));
        let e = encode(
            &CommandRequest::Text("AT@QRC?gl601###,01,A0E1$".into()),
            &target("1A"),
            7,
        )
        .unwrap();
        assert_eq!(&e.bytes[..], b"AT@QRC?gl601###,01,A0E1$");
        for bad in [
            "AT+GTRTO=gl300,8,,,,,,",
            "hello",
            "AT+GTRTO=gl300,8,,,,,,0A01\r\nAT+GTRTO=gl300,3,,,,,,0A02",
            "AT+GTRTO=gl300$,0A01",
        ] {
            assert!(
                encode(&CommandRequest::Text(bad.into()), &target("1A"), 7).is_err(),
                "{bad:?}"
            );
        }
        assert!(encode(
            &CommandRequest::Payload(vec![0xFF, 0xFE].into()),
            &target("1A"),
            7
        )
        .is_err());
    }
}
