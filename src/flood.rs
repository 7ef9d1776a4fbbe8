//! `avlgate udp-flood`: a load-test tool, not part of the gateway. Sends one UDP datagram
//! from each of many source ports of one address, as a spoofed flood would, to measure what
//! UDP peers cost the gateway (`bench/udp-flood.sh`). Sockets are bound to explicit ports one
//! after another and closed after their datagram, so tens of thousands of ports need neither
//! the ephemeral range nor as many open files. Loopback targets only.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::bail;

use avlgate::protocol::teltonika::{frame, samples};

/// What each datagram is.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kind {
    /// 12 bytes that pass detection (a Teltonika UDP header) but never decode: a peer that
    /// never identifies a device.
    Garbage,
    /// A whole Teltonika UDP datagram (two Codec 16 records) with a distinct IMEI per port:
    /// every peer identifies a device and is acknowledged.
    Valid,
}

#[derive(clap::Args)]
pub struct UdpFloodArgs {
    /// The gateway's UDP address (loopback).
    #[arg(long)]
    pub target: SocketAddr,
    /// Source address of every datagram (loopback).
    #[arg(long, default_value = "127.0.0.1")]
    pub source_ip: IpAddr,
    /// First source port; ports `first..first+ports` are used (ports in use are skipped).
    #[arg(long, default_value_t = 10_000)]
    pub first_port: u16,
    /// How many source ports (one datagram each).
    #[arg(long, default_value_t = 50_000)]
    pub ports: u32,
    #[arg(long, value_enum, default_value = "garbage")]
    pub kind: Kind,
    /// Datagrams per second at most (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
}

/// Sends the flood; returns a one-line summary.
pub fn run(a: &UdpFloodArgs) -> anyhow::Result<String> {
    if !a.target.ip().is_loopback() || !a.source_ip.is_loopback() {
        bail!("udp-flood sends to and from loopback addresses only");
    }
    let start = Instant::now();
    let (mut sent, mut skipped) = (0u32, 0u32);
    for i in 0..a.ports {
        let Some(port) = u16::try_from(u32::from(a.first_port) + i)
            .ok()
            .filter(|p| *p != a.target.port())
        else {
            skipped += 1;
            continue;
        };
        let Ok(sock) = UdpSocket::bind(SocketAddr::new(a.source_ip, port)) else {
            skipped += 1;
            continue;
        };
        let d = match a.kind {
            Kind::Garbage => frame::encode_udp(i as u16, 1, "1", &[0x08, 0x01, 0x00]),
            Kind::Valid => {
                let data = hex::decode(samples::CODEC16)?;
                let imei = format!("35{:013}", i);
                frame::encode_udp(i as u16, 1, &imei, &data[8..data.len() - 4])
            }
        };
        if sock.send_to(&d, a.target).is_ok() {
            sent += 1;
        }
        if a.rate > 0 {
            let due = start + Duration::from_secs_f64(f64::from(sent) / f64::from(a.rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "sent {sent} {:?} datagrams from {sent} source ports of {} in {secs:.2} s ({skipped} ports skipped)",
        a.kind, a.source_ip
    ))
}
