//! Protocol detection from the first bytes of a TCP stream or of a UDP datagram.
//!
//! The session layer reads under a timeout, calls [`detect`] with everything read so far, and
//! replays those bytes to the protocol it names. Detection never consumes bytes itself.

use crate::proto::Transport;

use super::{Probe, ProtocolModule, REGISTRY};

/// Past this many bytes a stream that no protocol claimed is unknown.
pub const MAX_DETECT_BYTES: usize = 64;

/// The outcome of looking at a prefix.
#[derive(Clone, Copy)]
pub enum Detection {
    Found(&'static ProtocolModule),
    NeedMore,
    Unknown,
}

impl std::fmt::Debug for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detection::Found(m) => write!(f, "Found({})", m.name()),
            Detection::NeedMore => f.write_str("NeedMore"),
            Detection::Unknown => f.write_str("Unknown"),
        }
    }
}

/// Asks every registered protocol about `prefix`. For UDP `prefix` is the whole datagram, so
/// "need more" there means unknown.
pub fn detect(prefix: &[u8], transport: Transport) -> Detection {
    detect_in(REGISTRY, prefix, transport)
}

fn detect_in(
    registry: &[&'static ProtocolModule],
    prefix: &[u8],
    transport: Transport,
) -> Detection {
    if prefix.is_empty() {
        return if transport == Transport::Udp {
            Detection::Unknown
        } else {
            Detection::NeedMore
        };
    }
    let mut need_more = false;
    for m in registry {
        match m.probe(prefix, transport) {
            Probe::Yes => return Detection::Found(m),
            Probe::NeedMore => need_more = true,
            Probe::No => {}
        }
    }
    if need_more && transport == Transport::Tcp && prefix.len() < MAX_DETECT_BYTES {
        Detection::NeedMore
    } else {
        Detection::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(d: Detection) -> Option<&'static str> {
        match d {
            Detection::Found(m) => Some(m.name()),
            _ => None,
        }
    }

    #[test]
    fn teltonika_login_is_detected_at_every_prefix_length() {
        let login = hex::decode("000f333536333037303432343431303133").unwrap();
        for n in 1..=login.len() {
            let d = detect(&login[..n], Transport::Tcp);
            match n {
                1..=2 => assert!(matches!(d, Detection::NeedMore), "prefix {n}: {d:?}"),
                _ => assert_eq!(name(d), Some("teltonika"), "prefix {n}"),
            }
        }
    }

    #[test]
    fn garbage_is_unknown_and_empty_needs_more() {
        assert!(matches!(
            detect(b"GET / HTTP/1.1\r\n", Transport::Tcp),
            Detection::Unknown
        ));
        assert!(matches!(detect(b"", Transport::Tcp), Detection::NeedMore));
        assert!(matches!(detect(b"", Transport::Udp), Detection::Unknown));
        assert!(matches!(
            detect(&[0x00, 0x0f, b'x'], Transport::Tcp),
            Detection::Unknown
        ));
    }

    #[test]
    fn an_over_long_imei_login_is_not_teltonika() {
        let mut v = vec![0x00, 0x14];
        v.extend(std::iter::repeat_n(b'1', 20));
        assert!(matches!(detect(&v, Transport::Tcp), Detection::Unknown));
    }
}
