//! Commands to a GPS103 device: `**,imei:<IMEI>,<code>[,<argument>]`, ASCII, no terminator
//! (as Traccar's encoder writes them; the device reads one command per TCP segment or
//! datagram).
//!
//! | request | code | note |
//! |---|---|---|
//! | `POSITION_REQUEST` | `B` | one position report now |
//! | `SET_REPORT_INTERVAL` | `C,<NN><s\|m\|h>` | `C,30s`, `C,05m`, `C,01h`: the exact interval in the largest unit that holds it, NN 01–99 |
//! | `ENGINE_STOP` / `ENGINE_RESUME` | `J` / `K` | fuel or power cut relay |
//! | `CUSTOM` | the text | e.g. `L` arm, `M` disarm, `E` cancel the alarm, `D` stop reporting, `A` single report mode, `160` photo, `H,080` speed limit |
//!
//! `REBOOT` and `OUTPUT_SET` have no GPRS command (Traccar's encoder has none either).
//!
//! The device answers nothing a server can match to a command: it executes it, and `B` makes
//! it send an ordinary report. Commands therefore end SENT
//! ([`super::Session::command_answered`] is false).

use bytes::Bytes;

use crate::protocol::{CommandError, CommandRequest};

/// Longest custom command text.
pub const MAX_TEXT_LEN: usize = 256;

/// `C,<NN><unit>`: `seconds` in the largest of h, m, s that divides it, NN 1..=99.
pub fn interval(seconds: u32) -> Result<String, CommandError> {
    for (unit, size) in [('h', 3600), ('m', 60), ('s', 1)] {
        if seconds % size == 0 && (1..=99).contains(&(seconds / size)) {
            return Ok(format!("C,{:02}{unit}", seconds / size));
        }
    }
    Err(CommandError::Invalid(format!(
        "GPS103 takes intervals as 1-99 seconds, minutes or hours (C,NNs|m|h); {seconds} s is none of them"
    )))
}

/// The command bytes for the device `imei`.
pub fn encode(imei: &str, command: &CommandRequest) -> Result<Bytes, CommandError> {
    let code: String = match command {
        CommandRequest::PositionRequest => "B".into(),
        CommandRequest::SetReportInterval { seconds } => interval(*seconds)?,
        CommandRequest::EngineStop => "J".into(),
        CommandRequest::EngineResume => "K".into(),
        CommandRequest::Text(t) => custom(t)?,
        CommandRequest::Payload(p) => custom(std::str::from_utf8(p).map_err(|_| {
            CommandError::Invalid("a GPS103 command is ASCII text".into())
        })?)?,
        other @ (CommandRequest::Reboot | CommandRequest::OutputSet { .. }) => {
            return Err(CommandError::UnsupportedType(format!(
                "GPS103 has no {} command; it encodes POSITION_REQUEST (B), SET_REPORT_INTERVAL (C), ENGINE_STOP (J), ENGINE_RESUME (K) and CUSTOM (e.g. L arm, M disarm, E alarm cancel)",
                other.type_name()
            )))
        }
    };
    Ok(Bytes::from(format!("**,imei:{imei},{code}")))
}

fn custom(text: &str) -> Result<String, CommandError> {
    if text.is_empty() {
        return Err(CommandError::Invalid("command text is empty".into()));
    }
    crate::protocol::check_command_text(text)?;
    if !text.is_ascii() || text.len() > MAX_TEXT_LEN {
        return Err(CommandError::Invalid(format!(
            "a GPS103 command is 1..={MAX_TEXT_LEN} ASCII characters"
        )));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMEI: &str = "123456789012345";

    fn enc(c: CommandRequest) -> Result<String, CommandError> {
        encode(IMEI, &c).map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn typed_commands_have_their_exact_bytes() {
        assert_eq!(
            enc(CommandRequest::PositionRequest).unwrap(),
            "**,imei:123456789012345,B"
        );
        assert_eq!(
            enc(CommandRequest::EngineStop).unwrap(),
            "**,imei:123456789012345,J"
        );
        assert_eq!(
            enc(CommandRequest::EngineResume).unwrap(),
            "**,imei:123456789012345,K"
        );
        assert_eq!(
            enc(CommandRequest::SetReportInterval { seconds: 300 }).unwrap(),
            "**,imei:123456789012345,C,05m"
        );
        assert_eq!(
            enc(CommandRequest::Text("H,080".into())).unwrap(),
            "**,imei:123456789012345,H,080"
        );
        assert_eq!(
            enc(CommandRequest::Payload(Bytes::from_static(b"L"))).unwrap(),
            "**,imei:123456789012345,L"
        );
    }

    #[test]
    fn intervals_are_exact_or_refused() {
        for (s, want) in [
            (1, "C,01s"),
            (30, "C,30s"),
            (60, "C,01m"),
            (90, "C,90s"),
            (120, "C,02m"),
            (3600, "C,01h"),
            (5400, "C,90m"),
            (7200, "C,02h"),
            (99 * 3600, "C,99h"),
        ] {
            assert_eq!(interval(s).unwrap(), want, "{s}");
        }
        for s in [0, 101, 61 * 60 + 1, 100 * 3600, 6001] {
            assert!(interval(s).is_err(), "{s}");
        }
    }

    #[test]
    fn what_cannot_be_carried_is_refused_with_a_reason() {
        for c in [
            CommandRequest::Reboot,
            CommandRequest::OutputSet { index: 1, on: true },
        ] {
            let e = enc(c).unwrap_err();
            assert!(
                matches!(&e, CommandError::UnsupportedType(r) if r.contains("ENGINE_STOP")),
                "{e}"
            );
        }
        for bad in ["", "B\r\n**,imei:1,J", "é", &"x".repeat(MAX_TEXT_LEN + 1)] {
            assert!(
                matches!(
                    enc(CommandRequest::Text(bad.into())),
                    Err(CommandError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(enc(CommandRequest::Payload(Bytes::from_static(&[0xff]))).is_err());
    }
}
