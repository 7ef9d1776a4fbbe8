//! `avlgate decode`: runs captured frames through the same detector, decoders and session
//! logic as the server (into an in-memory sink), and prints what the server would publish and
//! reply. This is the tool for "my tracker's capture does not decode".

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::proto::Transport;
use crate::protocol::detect::{detect, Detection};
use crate::session::{Core, Replier, Shared};
use crate::sink::{memory::MemorySink, Format, Publisher};

/// One line of output.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A published event, as canonical JSON.
    Event(String),
    /// The bytes the server would send back.
    Reply(Vec<u8>),
    /// Why a frame was refused.
    Error(String),
    /// Nothing recognised the bytes.
    Unknown(String),
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Event(json) => f.write_str(json),
            Output::Reply(b) => {
                write!(f, "reply: {}", hex::encode(b))?;
                if !b.is_empty()
                    && b.iter()
                        .all(|c| c.is_ascii_graphic() || *c == b' ' || *c == b'\r' || *c == b'\n')
                {
                    write!(f, " ({})", String::from_utf8_lossy(b).trim_end())?;
                }
                Ok(())
            }
            Output::Error(e) => write!(f, "error: {e}"),
            Output::Unknown(e) => write!(f, "error: {e}"),
        }
    }
}

/// Turns a command-line frame into bytes: hex (spaces allowed, optional `0x`) or, when it is
/// not hex, the text itself with `\r\n` added if missing (text protocols end lines with it).
pub fn parse_frame(arg: &str) -> Vec<u8> {
    let compact: String = arg
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !compact.is_empty()
        && compact.len() % 2 == 0
        && compact.bytes().all(|b| b.is_ascii_hexdigit())
    {
        if let Ok(b) = hex::decode(&compact) {
            return b;
        }
    }
    let mut v = arg.as_bytes().to_vec();
    if !v.ends_with(b"\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

struct Collect(Vec<Vec<u8>>);

impl Replier for Collect {
    async fn reply(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.push(bytes.to_vec());
        Ok(())
    }
}

/// Decodes `frames` in order as one TCP stream (or as UDP datagrams from one peer) and
/// returns, per frame, what the server would do.
pub async fn decode_frames(
    frames: &[Vec<u8>],
    transport: Transport,
    config: &Config,
) -> Vec<Vec<Output>> {
    let sink = MemorySink::new();
    let publisher = Arc::new(Publisher::new(
        Arc::new(sink.clone()),
        Format::Json,
        config.in_flight.clone(),
    ));
    let shared = Arc::new(Shared::new(
        publisher,
        "decode".into(),
        config.protocols.clone(),
        config.timeouts.clone(),
        CancellationToken::new(),
    ));
    let peer: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut core: Option<Core> = None;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for frame in frames {
        let mut lines = Vec::new();
        if transport == Transport::Udp {
            buf.clear();
        }
        buf.extend_from_slice(frame);
        if core.is_none()
            || transport == Transport::Udp
                && core.is_some()
                && !matches!(detect(&buf, transport), Detection::Found(m) if Some(m.protocol()) == core.as_ref().map(|c| c.protocol))
        {
            match detect(&buf, transport) {
                Detection::Found(m) => {
                    let mut c =
                        Core::new(shared.clone(), m, transport, peer, tracing::Span::none());
                    // Keep the identity across datagrams of the same protocol.
                    c.errors = Some(Box::default());
                    core = Some(c);
                }
                Detection::NeedMore => {
                    out.push(vec![Output::Unknown(
                        "not enough bytes to recognise a protocol yet".into(),
                    )]);
                    continue;
                }
                Detection::Unknown => {
                    out.push(vec![Output::Unknown(format!(
                        "no protocol recognises {}",
                        hex::encode(&buf[..buf.len().min(16)])
                    ))]);
                    buf.clear();
                    continue;
                }
            }
        }
        let Some(c) = core.as_mut() else { continue };
        let mut replies = Collect(Vec::new());
        let ended = c.process(&mut buf, &mut replies).await;
        for m in sink.take() {
            lines.push(Output::Event(
                String::from_utf8_lossy(&m.payload).into_owned(),
            ));
        }
        for r in replies.0 {
            lines.push(Output::Reply(r));
        }
        for e in c
            .errors
            .as_deref_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            lines.push(Output::Error(e));
        }
        if ended.is_err() && transport == Transport::Tcp {
            lines.push(Output::Error(
                "the server would close the connection here".into(),
            ));
            core = None;
            buf.clear();
        }
        if transport == Transport::Udp && !buf.is_empty() {
            lines.push(Output::Error(format!(
                "{} bytes left over after the last frame of the datagram",
                buf.len()
            )));
        }
        out.push(lines);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn frames_parse_as_hex_or_text() {
        assert_eq!(parse_frame("00 0f"), vec![0, 15]);
        assert_eq!(parse_frame("0x0102"), vec![1, 2]);
        assert_eq!(parse_frame("#P#"), b"#P#\r\n".to_vec());
        assert_eq!(parse_frame("#P#\n"), b"#P#\n".to_vec());
    }

    #[tokio::test]
    async fn a_login_then_data_decodes_like_the_server() {
        let config = Settings::default().resolve().unwrap();
        let frames = vec![
            parse_frame("000f333536333037303432343431303133"),
            parse_frame(crate::protocol::teltonika::samples::CODEC8),
        ];
        let out = decode_frames(&frames, Transport::Tcp, &config).await;
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0][0], Output::Event(j) if j.contains("EVENT_KIND_SESSION_OPENED")));
        assert_eq!(out[0][1], Output::Reply(vec![1]));
        assert!(
            matches!(&out[1][0], Output::Event(j) if j.contains("EVENT_KIND_STATUS") && j.contains("\"imei\":\"356307042441013\"") && j.contains("\"externalPowerVolts\":24.079"))
        );
        assert_eq!(out[1][1], Output::Reply(vec![0, 0, 0, 1]));
    }

    #[tokio::test]
    async fn a_bad_crc_is_reported_and_not_acknowledged() {
        let config = Settings::default().resolve().unwrap();
        let mut bad = parse_frame(crate::protocol::teltonika::samples::CODEC8);
        let n = bad.len();
        bad[n - 1] ^= 1;
        let out = decode_frames(
            &[parse_frame("000f333536333037303432343431303133"), bad],
            Transport::Tcp,
            &config,
        )
        .await;
        assert_eq!(out[1].len(), 1);
        assert!(matches!(&out[1][0], Output::Error(e) if e.contains("checksum")));
    }
}
