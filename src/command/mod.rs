//! Commands to live devices, across a fleet of stateless pods.
//!
//! Backends produce `Command`s (protobuf, or canonical JSON when the payload starts with `{`)
//! keyed by IMEI. Every pod reads every command and every claim ([`ledger`]); the pod holding
//! the device's session claims the command, writes it once, and reports `CommandResult`s.

pub mod bus;
pub mod dispatcher;
pub mod ledger;
pub mod session;

use crate::proto::Command;

/// Decodes a command from a broker payload: canonical JSON when it starts with `{`, protobuf
/// otherwise.
pub fn parse(payload: &[u8]) -> Result<Command, String> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        serde_json::from_slice(payload).map_err(|e| format!("invalid JSON command: {e}"))
    } else {
        prost::Message::decode(payload).map_err(|e| format!("invalid protobuf command: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::command::Body;

    #[test]
    fn json_and_protobuf_commands_parse_alike() {
        let j = br#"{"commandId":"c-1","imei":"356307042441013","text":"getinfo","ttlSecs":30}"#;
        let c = parse(j).unwrap();
        assert_eq!(c.command_id, "c-1");
        assert_eq!(c.body, Some(Body::Text("getinfo".into())));
        assert_eq!(c.ttl_secs, 30);
        let p = prost::Message::encode_to_vec(&c);
        assert_eq!(parse(&p).unwrap(), c);
        assert!(parse(b"{not json").is_err());
        assert!(parse(&[0xff, 0xff, 0xff]).is_err());
    }
}
