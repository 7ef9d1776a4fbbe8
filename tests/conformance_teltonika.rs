//! The Teltonika frames of Traccar's test suite (tests/data/traccar-frames.json), replayed per
//! test method in order on one session. Frames with a valid length and CRC must decode to
//! their records (ACK = record count); the others must be refused without an ACK.

use std::collections::BTreeMap;
use std::time::SystemTime;

use avlgate::proto::Transport;
use avlgate::protocol::teltonika::Teltonika;
use avlgate::protocol::{Action, Limits, ProtocolModule};
use bytes::BytesMut;
use serde_json::Value;

#[test]
fn traccar_teltonika_frames() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames.json"
    ))
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut by_test: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for e in all
        .iter()
        .filter(|e| e["protocol"] == "teltonika" && e["test_kind"] == "protocol_decoder")
    {
        by_test
            .entry((
                e["test"].as_str().unwrap().into(),
                e["transport"].as_str().unwrap().into(),
            ))
            .or_default()
            .push(e);
    }
    let (mut valid, mut valid_ok, mut invalid, mut invalid_rejected) = (0, 0, 0, 0);
    let mut notes = Vec::new();
    for ((test, transport), mut entries) in by_test {
        entries.sort_by_key(|e| e["seq"].as_u64());
        let transport = if transport == "udp" {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let mut s = Teltonika.new_session(transport, &Limits::default());
        for e in entries {
            let frame = hex::decode(e["frame"].as_str().unwrap()).unwrap();
            let wire = &e["wire"];
            let is_login = wire["kind"] == "imei_login";
            let ok_wire = wire["length_ok"] != false
                && wire["crc"] != "mismatch"
                && wire["crc"] != "unverifiable";
            let mut buf = BytesMut::from(&frame[..]);
            let got = s.decode(&mut buf, SystemTime::now());
            let id = format!("{test} seq {}", e["seq"]);
            if is_login {
                assert!(
                    matches!(got, Ok(Some(ref f)) if f.login.is_some()),
                    "{id}: login"
                );
                continue;
            }
            if ok_wire {
                valid += 1;
                match got {
                    Ok(Some(f)) => {
                        let count1 = wire["count1"].as_u64();
                        if let Some(n) = count1.filter(|_| {
                            wire["codec"] != "0x0c"
                                && wire["codec"] != "0x0d"
                                && wire["codec"] != "0x0e"
                        }) {
                            assert_eq!(f.events.len() as u64, n, "{id}: record count");
                            let ack = f.reply.as_deref().expect("ACK");
                            let expected_ack: Vec<u8> = if transport == Transport::Udp {
                                ack.to_vec()
                            } else {
                                (n as u32).to_be_bytes().to_vec()
                            };
                            assert_eq!(ack, &expected_ack[..], "{id}: ACK is the record count");
                        }
                        valid_ok += 1;
                    }
                    Ok(None) => panic!("{id}: a complete frame was reported incomplete"),
                    Err(err) => {
                        assert!(err.reply.is_none(), "{id}: a refused frame gets no ACK");
                        notes.push(format!("{id}: valid CRC but refused: {err}"));
                    }
                }
            } else {
                invalid += 1;
                match got {
                    Err(err) => {
                        assert!(err.reply.is_none(), "{id}: no ACK");
                        invalid_rejected += 1;
                        if err.action == Action::Close {
                            // The stream is closed; later frames of this test need a new session.
                            s = Teltonika.new_session(transport, &Limits::default());
                            let mut l = BytesMut::from(
                                &hex::decode("000f333536333037303432343431303133").unwrap()[..],
                            );
                            s.decode(&mut l, SystemTime::now()).unwrap();
                        }
                    }
                    Ok(None) => {
                        // A length field longer than the frame: the strict reading waits for bytes
                        // that never come; the device gets no ACK.
                        invalid_rejected += 1;
                        s = Teltonika.new_session(transport, &Limits::default());
                        let mut l = BytesMut::from(
                            &hex::decode("000f333536333037303432343431303133").unwrap()[..],
                        );
                        s.decode(&mut l, SystemTime::now()).unwrap();
                    }
                    Ok(Some(_)) => panic!("{id}: a frame with a bad CRC or length was accepted"),
                }
            }
        }
    }
    eprintln!("teltonika conformance: {valid_ok}/{valid} valid frames decoded; {invalid_rejected}/{invalid} bad-CRC/length frames refused");
    for n in &notes {
        eprintln!("  {n}");
    }
    assert_eq!(invalid_rejected, invalid);
    // Valid-CRC frames the gateway refuses, each for a stated reason: Codec 7 (GH-series, not
    // supported), the camera message type of Codec 12, and two Codec 8 frames carrying an IO
    // group only a per-device setting announces. Everything else must decode.
    assert_eq!(valid_ok + notes.len(), valid);
    assert!(notes.len() <= 5, "{notes:?}");
    for n in &notes {
        assert!(
            n.contains("codec 0x07")
                || n.contains("type 0x0d")
                || n.contains("seq 46")
                || n.contains("seq 47"),
            "unexpected refusal: {n}"
        );
    }
}
