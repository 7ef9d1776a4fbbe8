//! PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy, AWS NLB and nginx `stream`
//! send them in front of a TCP connection so that the real client address survives the load
//! balancer. Sans-IO: [`parse`] looks at everything read so far and says "need more", "here is
//! the header and its length", or why the bytes are not a header. Bounded: a v1 header is at
//! most [`V1_MAX_BYTES`], a v2 header at most 16 + [`V2_MAX_PAYLOAD`] bytes; anything longer is
//! refused before more is read.
//!
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 line, `\r\n` included (spec section 2.1).
pub const V1_MAX_BYTES: usize = 107;
/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Largest v2 address + TLV block accepted. Load balancers send tens of bytes (AWS NLB adds a
/// VPC endpoint id, HAProxy optional SSL/unique-id TLVs); the spec allows 65535, which would
/// let a peer make us buffer 64 KiB before we know anything.
pub const V2_MAX_PAYLOAD: usize = 2048;
/// Largest header of either version.
pub const MAX_HEADER_BYTES: usize = 16 + V2_MAX_PAYLOAD;

const V1_PREFIX: &[u8] = b"PROXY ";

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied connection from `source` to `destination`.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 `LOCAL` (the balancer's own health check): use the socket's address.
    Local,
    /// v1 `UNKNOWN` or a v2 family we do not route on (UNSPEC, UNIX): use the socket's address.
    Unknown,
}

impl Header {
    /// The client address, when the header carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Header::Proxied { source, .. } => Some(*source),
            _ => None,
        }
    }
}

/// The outcome of looking at a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Could be a header; read more.
    NeedMore,
    /// A complete header of `len` bytes at the front of the buffer; the stream proper starts
    /// after it.
    Done { header: Header, len: usize },
}

/// Why the bytes are not an acceptable header. Every one closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header longer than {V1_MAX_BYTES} bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    #[error("PROXY v2 header payload of {0} bytes exceeds the {V2_MAX_PAYLOAD}-byte cap")]
    V2TooLong(usize),
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
}

/// Parses a PROXY header at the front of `buf` (everything read so far).
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.is_empty() {
        return Ok(Parsed::NeedMore);
    }
    if starts_like(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(Parsed::NeedMore)
        } else {
            parse_v1(buf)
        };
    }
    if starts_like(buf, &V2_SIGNATURE) {
        return if buf.len() < 16 {
            Ok(Parsed::NeedMore)
        } else {
            parse_v2(buf)
        };
    }
    Err(ProxyError::NotProxy)
}

/// True when `buf` and `sig` agree on their common prefix.
fn starts_like(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf.get(..n) == sig.get(..n)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = buf.get(..buf.len().min(V1_MAX_BYTES)).unwrap_or_default();
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_BYTES {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Parsed::NeedMore)
        };
    };
    let len = cr + 2;
    let line = window.get(V1_PREFIX.len()..cr).unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::V1("not ASCII"))?;
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // The rest of the line is to be ignored (spec 2.1).
        return Ok(Parsed::Done {
            header: Header::Unknown,
            len,
        });
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::V1("unknown protocol family")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ProxyError::V1("expected four fields after the family"));
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        if v6 {
            s.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| ProxyError::V1("bad IPv6 address"))
        } else {
            s.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| ProxyError::V1("bad IPv4 address"))
        }
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    let destination = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(Parsed::Done {
        header: Header::Proxied {
            source,
            destination,
        },
        len,
    })
}

/// A decimal port: digits only (`u16::from_str` would take a `+`).
fn port(s: &str) -> Result<u16, ProxyError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::V1("bad port"));
    }
    s.parse().map_err(|_| ProxyError::V1("bad port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let (Some(&ver_cmd), Some(&fam), Some(len_hi), Some(len_lo)) =
        (buf.get(12), buf.get(13), buf.get(14), buf.get(15))
    else {
        return Ok(Parsed::NeedMore);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2("version is not 2"));
    }
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::V2("unknown command")),
    };
    let payload_len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
    if payload_len > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2TooLong(payload_len));
    }
    let len = 16 + payload_len;
    let Some(payload) = buf.get(16..len) else {
        return Ok(Parsed::NeedMore);
    };
    if local {
        // The balancer talking for itself; address block and TLVs are to be ignored.
        return Ok(Parsed::Done {
            header: Header::Local,
            len,
        });
    }
    if !matches!(fam & 0x0F, 0..=2) {
        return Err(ProxyError::V2("unknown transport"));
    }
    let (header, addr_len) = match fam >> 4 {
        // INET
        1 => {
            let a = payload
                .get(..12)
                .ok_or(ProxyError::V2("address block too short for IPv4"))?;
            let ip4 = |o: usize| Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]);
            let p = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                Header::Proxied {
                    source: SocketAddr::new(IpAddr::V4(ip4(0)), p(8)),
                    destination: SocketAddr::new(IpAddr::V4(ip4(4)), p(10)),
                },
                12,
            )
        }
        // INET6
        2 => {
            let a = payload
                .get(..36)
                .ok_or(ProxyError::V2("address block too short for IPv6"))?;
            let ip6 = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                Ipv6Addr::from(b)
            };
            let p = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                Header::Proxied {
                    source: SocketAddr::new(IpAddr::V6(ip6(0)), p(32)),
                    destination: SocketAddr::new(IpAddr::V6(ip6(16)), p(34)),
                },
                36,
            )
        }
        // UNSPEC, UNIX: nothing to route on.
        0 | 3 => (Header::Unknown, payload_len),
        _ => return Err(ProxyError::V2("unknown address family")),
    };
    check_tlvs(payload.get(addr_len..).unwrap_or_default())?;
    Ok(Parsed::Done { header, len })
}

/// TLVs (type u8, length u16, value) follow the addresses. Their content is not needed here
/// (unknown types must be ignored), but one that runs past the header means the sender and we
/// disagree about the framing: refuse rather than guess.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let (Some(hi), Some(lo)) = (tlvs.get(1), tlvs.get(2)) else {
            return Err(ProxyError::V2("truncated TLV header"));
        };
        let end = 3 + usize::from(u16::from_be_bytes([*hi, *lo]));
        tlvs = tlvs
            .get(end..)
            .ok_or(ProxyError::V2("TLV runs past the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (Header, usize) {
        match parse(buf) {
            Ok(Parsed::Done { header, len }) => (header, len),
            other => panic!("expected a header, got {other:?}"),
        }
    }

    /// Every strict prefix needs more; the whole parses; trailing stream bytes are not eaten.
    fn check_incremental(header: &[u8], expect: Header) {
        for n in 0..header.len() {
            assert_eq!(parse(&header[..n]), Ok(Parsed::NeedMore), "prefix {n}");
        }
        let mut with_data = header.to_vec();
        with_data.extend_from_slice(b"\x00\x0f356307042441013");
        assert_eq!(done(&with_data), (expect, header.len()));
    }

    fn v2(cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4() {
        check_incremental(
            b"PROXY TCP4 203.0.113.7 10.0.0.5 56324 5027\r\n",
            Header::Proxied {
                source: sa("203.0.113.7:56324"),
                destination: sa("10.0.0.5:5027"),
            },
        );
    }

    #[test]
    fn v1_tcp6() {
        check_incremental(
            b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 5027\r\n",
            Header::Proxied {
                source: sa("[2001:db8::1]:65535"),
                destination: sa("[2001:db8::2]:5027"),
            },
        );
    }

    #[test]
    fn v1_unknown_ignores_the_rest() {
        check_incremental(b"PROXY UNKNOWN\r\n", Header::Unknown);
        check_incremental(
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            Header::Unknown,
        );
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::V1(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn v1_without_crlf_is_refused_at_107_bytes() {
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(V1_MAX_BYTES - 1, b'1');
        assert_eq!(parse(&long), Ok(Parsed::NeedMore));
        long.push(b'1');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v2_tcp4() {
        let mut p = vec![203, 0, 113, 7, 10, 0, 0, 5];
        p.extend_from_slice(&56324u16.to_be_bytes());
        p.extend_from_slice(&5027u16.to_be_bytes());
        check_incremental(
            &v2(1, 0x11, &p),
            Header::Proxied {
                source: sa("203.0.113.7:56324"),
                destination: sa("10.0.0.5:5027"),
            },
        );
    }

    #[test]
    fn v2_tcp6() {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let mut p = src.octets().to_vec();
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&1234u16.to_be_bytes());
        p.extend_from_slice(&5027u16.to_be_bytes());
        check_incremental(
            &v2(1, 0x21, &p),
            Header::Proxied {
                source: sa("[2001:db8::7]:1234"),
                destination: sa("[2001:db8::5]:5027"),
            },
        );
    }

    #[test]
    fn v2_tlvs_are_skipped_and_checked() {
        let mut p = vec![198, 51, 100, 1, 10, 0, 0, 5, 0x10, 0x00, 0x13, 0xA3];
        // AWS NLB VPC endpoint id (type 0xEA, subtype 0x01) and a NOOP padding TLV.
        let vpce = b"\x01vpce-08d2bf15fac5001c9";
        p.push(0xEA);
        p.extend_from_slice(&(vpce.len() as u16).to_be_bytes());
        p.extend_from_slice(vpce);
        p.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]);
        let header = v2(1, 0x11, &p);
        check_incremental(
            &header,
            Header::Proxied {
                source: sa("198.51.100.1:4096"),
                destination: sa("10.0.0.5:5027"),
            },
        );
        // The last TLV claims one byte more than the header holds.
        let mut bad = p.clone();
        let n = bad.len();
        bad[n - 3] = 3;
        assert!(matches!(parse(&v2(1, 0x11, &bad)), Err(ProxyError::V2(_))));
        // A TLV header cut short.
        let mut cut = p[..12].to_vec();
        cut.extend_from_slice(&[0x01, 0x00]);
        assert!(matches!(parse(&v2(1, 0x11, &cut)), Err(ProxyError::V2(_))));
    }

    #[test]
    fn v2_local_and_unspec() {
        // LOCAL may carry an address block; it is ignored.
        check_incremental(&v2(0, 0x11, &[0; 12]), Header::Local);
        check_incremental(&v2(0, 0x00, &[]), Header::Local);
        check_incremental(&v2(1, 0x00, &[]), Header::Unknown);
        check_incremental(&v2(1, 0x31, &[0; 216]), Header::Unknown);
    }

    #[test]
    fn v2_malformed() {
        // Version 1 in the v2 framing.
        let mut b = v2(1, 0x11, &[0; 12]);
        b[12] = 0x11;
        assert!(matches!(parse(&b), Err(ProxyError::V2(_))));
        // Unknown command.
        assert!(matches!(
            parse(&v2(2, 0x11, &[0; 12])),
            Err(ProxyError::V2(_))
        ));
        // Address block shorter than the family needs.
        assert!(matches!(
            parse(&v2(1, 0x11, &[0; 11])),
            Err(ProxyError::V2(_))
        ));
        assert!(matches!(
            parse(&v2(1, 0x21, &[0; 35])),
            Err(ProxyError::V2(_))
        ));
        // Unknown family and transport.
        assert!(matches!(
            parse(&v2(1, 0x41, &[0; 12])),
            Err(ProxyError::V2(_))
        ));
        assert!(matches!(
            parse(&v2(1, 0x13, &[0; 12])),
            Err(ProxyError::V2(_))
        ));
    }

    #[test]
    fn v2_oversized_length_is_refused_from_the_fixed_header() {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[0x21, 0x11]);
        b.extend_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
        assert_eq!(parse(&b), Err(ProxyError::V2TooLong(V2_MAX_PAYLOAD + 1)));
    }

    #[test]
    fn garbage_and_device_bytes_are_not_proxy() {
        for g in [
            &b"\x00\x0f356307042441013"[..],
            b"#L#356307042441013;NA\r\n",
            b"\x78\x78\x0d\x01",
            b"\x16\x03\x01",
            b"GET / HTTP/1.1\r\n",
            b"PROXX",
            b"\r\n\r\n\0\r\nQUIX",
        ] {
            assert_eq!(parse(g), Err(ProxyError::NotProxy), "{g:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded() {
        // A cheap deterministic fuzz: every outcome is NeedMore only while under the caps.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 200) as usize;
            let prefix: &[u8] = match x % 3 {
                0 => &V2_SIGNATURE,
                1 => V1_PREFIX,
                _ => &[],
            };
            let mut b = prefix.to_vec();
            b.extend((0..len).map(|i| (x.rotate_left(i as u32 % 64) & 0xFF) as u8));
            if let Ok(Parsed::NeedMore) = parse(&b) {
                assert!(b.len() < MAX_HEADER_BYTES);
            }
            if let Ok(Parsed::Done { len, .. }) = parse(&b) {
                assert!(len <= b.len() && len <= MAX_HEADER_BYTES);
            }
        }
    }
}
