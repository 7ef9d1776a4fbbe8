//! Detection on the shared port, over every registered protocol:
//!
//! - every simulator device's stream (TCP) is never taken for another protocol at any prefix
//!   length, and is recognised once its first bytes are in; its first UDP datagram is
//!   recognised whole;
//! - no conformance frame of a registered protocol (`tests/data/traccar-frames*.json`, device
//!   to server) is taken for another protocol at any prefix length, over TCP or as a UDP
//!   datagram.
//!
//! A protocol added to the registry is checked against all the others here.

mod props;

use avlgate::proto::Transport;
use avlgate::protocol::detect::{detect, Detection, MAX_DETECT_BYTES};
use avlgate::protocol::REGISTRY;

fn name(d: Detection) -> Option<&'static str> {
    match d {
        Detection::Found(m) => Some(m.name()),
        _ => None,
    }
}

#[test]
fn simulator_streams_are_detected_as_their_own_protocol_at_every_prefix() {
    for (m, t, stream, units) in props::simulated_streams(2) {
        if t == Transport::Udp {
            let first = &stream[..units[0]];
            assert_eq!(
                name(detect(first, t)),
                Some(m.name()),
                "{} UDP datagram",
                m.name()
            );
            continue;
        }
        let mut found = false;
        for n in 1..=stream.len().min(MAX_DETECT_BYTES) {
            let d = detect(&stream[..n], t);
            match d {
                Detection::Found(x) => {
                    assert_eq!(x.name(), m.name(), "{} prefix {n}: {d:?}", m.name());
                    found = true;
                }
                Detection::NeedMore => assert!(!found, "{} prefix {n} went back", m.name()),
                Detection::Unknown => panic!("{} prefix {n} is unknown", m.name()),
            }
        }
        assert!(found, "{} never recognised", m.name());
    }
}

#[test]
fn conformance_frames_are_never_taken_for_another_protocol() {
    let registered: Vec<&str> = REGISTRY.iter().map(|m| m.name()).collect();
    let mut checked = 0;
    for file in ["traccar-frames.json", "traccar-frames-more.json"] {
        let text =
            std::fs::read_to_string(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for e in &all {
            let Some(protocol) = e["protocol"].as_str().filter(|p| registered.contains(p)) else {
                continue;
            };
            // Frames as a device sends them (frame-decoder inputs may start mid-stream, e.g.
            // Teltonika's `FF` keep-alive, which no connection starts with).
            if e["direction"] == "server_to_device" || e["test_kind"] != "protocol_decoder" {
                continue;
            }
            let frame = e["frame"].as_str().unwrap_or_default();
            let bytes = if e["encoding"] == "hex" {
                match hex::decode(frame) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            } else {
                frame.as_bytes().to_vec()
            };
            for t in [Transport::Tcp, Transport::Udp] {
                for n in 1..=bytes.len().min(MAX_DETECT_BYTES) {
                    let d = detect(&bytes[..n], t);
                    if let Detection::Found(m) = d {
                        assert_eq!(
                            m.name(),
                            protocol,
                            "{} seq {} over {t:?}, prefix {n}: {frame:.60}",
                            e["test"],
                            e["seq"]
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked} frames checked");
}
