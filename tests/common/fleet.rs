//! A small fleet of Teltonika devices that behave like real ones under faults: each sends
//! numbered frames of distinct records, waits for the ACK, and on a missing ACK or a dropped
//! connection reconnects, logs in again and resends the same bytes. What each device had
//! acknowledged is returned so a test can check it against what the broker holds.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use avlgate::protocol::teltonika::avl::{self, Codec, IoValue, Record};
use avlgate::protocol::teltonika::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// One record's identity: (IMEI, device time in ms).
pub type RecordId = (String, i64);

#[derive(Debug, Default)]
pub struct DeviceReport {
    pub imei: String,
    /// Records whose frame got its ACK.
    pub acked: BTreeSet<RecordId>,
    /// Records sent more than once (their frame was resent after a missing ACK).
    pub resent: BTreeSet<RecordId>,
    pub frames_acked: usize,
    /// When each acknowledged frame got its ACK, with its records.
    pub acked_frames: Vec<(Instant, Vec<RecordId>)>,
    pub retransmits: usize,
    pub reconnects: usize,
}

/// A valid 15-digit IMEI for device `n`.
pub fn imei(n: u32) -> String {
    format!("35630704{:07}", 1000 + n)
}

/// Frame `i` of a device: `per_frame` records with device times that identify them.
pub fn frame_records(i: u64, per_frame: u64) -> Vec<Record> {
    (0..per_frame)
        .map(|r| Record {
            timestamp_ms: 1_700_000_000_000 + i * 10_000 + r * 1000,
            priority: 0,
            longitude: 250_000_000 + (i * 100 + r) as i32,
            latitude: 546_000_000,
            altitude: 100,
            angle: 90,
            satellites: 9,
            speed: 50,
            event_io: 0,
            generation_type: None,
            io: vec![(239, IoValue::U8(1)), (66, IoValue::U16(12_500))],
        })
        .collect()
}

/// Runs one device: `frames` frames of `per_frame` records against `gateway`, within
/// `deadline`. `ack_wait` is how long it waits for an ACK before resending.
pub async fn run_device(
    gateway: SocketAddr,
    n: u32,
    frames: u64,
    per_frame: u64,
    pause: Duration,
    ack_wait: Duration,
    deadline: Duration,
) -> DeviceReport {
    let imei = imei(n);
    let mut report = DeviceReport {
        imei: imei.clone(),
        ..Default::default()
    };
    let end = Instant::now() + deadline;
    let mut conn: Option<TcpStream> = None;
    let mut i = 0;
    let mut attempts_of_this_frame = 0;
    while i < frames && Instant::now() < end {
        if conn.is_none() {
            match login(gateway, &imei, ack_wait).await {
                Some(s) => conn = Some(s),
                None => {
                    report.reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let records = frame_records(i, per_frame);
        let bytes = frame::encode_tcp(&avl::encode(Codec::C8E, &records));
        let ids: Vec<RecordId> = records
            .iter()
            .map(|r| (imei.clone(), r.timestamp_ms as i64))
            .collect();
        if attempts_of_this_frame > 0 {
            report.retransmits += 1;
            report.resent.extend(ids.iter().cloned());
        }
        attempts_of_this_frame += 1;
        let s = conn.as_mut().expect("connected above");
        let mut ack = [0u8; 4];
        let ok = s.write_all(&bytes).await.is_ok()
            && matches!(timeout(ack_wait, s.read_exact(&mut ack)).await, Ok(Ok(_)));
        if ok && u32::from_be_bytes(ack) as u64 == per_frame {
            report.acked_frames.push((Instant::now(), ids.clone()));
            report.acked.extend(ids);
            report.frames_acked += 1;
            i += 1;
            attempts_of_this_frame = 0;
            tokio::time::sleep(pause).await;
        } else {
            // No (or a wrong) ACK: the device drops the connection and resends later.
            conn = None;
            report.reconnects += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    report
}

async fn login(gateway: SocketAddr, imei: &str, wait: Duration) -> Option<TcpStream> {
    let mut s = timeout(wait, TcpStream::connect(gateway))
        .await
        .ok()?
        .ok()?;
    s.write_all(&frame::encode_login(imei)).await.ok()?;
    let mut b = [0u8; 1];
    match timeout(wait, s.read_exact(&mut b)).await {
        Ok(Ok(_)) if b[0] == 1 => Some(s),
        _ => None,
    }
}

/// Starts `devices` devices (`frames` frames of `per_frame` records each, a frame every
/// 100 ms, 6 s ACK wait, 90 s at most).
pub fn start_fleet(
    gateway: SocketAddr,
    devices: u32,
    frames: u64,
    per_frame: u64,
) -> Vec<tokio::task::JoinHandle<DeviceReport>> {
    (0..devices)
        .map(|n| {
            tokio::spawn(run_device(
                gateway,
                n,
                frames,
                per_frame,
                Duration::from_millis(100),
                Duration::from_secs(6),
                Duration::from_secs(90),
            ))
        })
        .collect()
}

/// Polls `down` every 100 ms for up to 5 s: true once it held.
pub async fn noticed(down: impl Fn() -> bool) -> bool {
    for _ in 0..50 {
        if down() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Position events in `events`, counted by record id.
pub fn census(
    events: &[avlgate::proto::TelemetryEvent],
) -> std::collections::BTreeMap<RecordId, usize> {
    let mut m = std::collections::BTreeMap::new();
    for e in events {
        if e.kind == avlgate::proto::EventKind::Position as i32 {
            let t = e.device_time.as_ref().expect("device time");
            let ms = t.seconds * 1000 + i64::from(t.nanos) / 1_000_000;
            *m.entry((e.imei.clone(), ms)).or_insert(0) += 1;
        }
    }
    m
}

/// The outage checks: every device finished its `frames`, some frames had to be resent, every
/// acknowledged record is in `census`, and records appear more than once only if resent.
pub fn assert_nothing_acknowledged_was_lost(
    reports: Vec<DeviceReport>,
    frames: usize,
    census: &std::collections::BTreeMap<RecordId, usize>,
) {
    for r in &reports {
        assert_eq!(
            r.frames_acked, frames,
            "{} finished its stream: {r:?}",
            r.imei
        );
    }
    assert!(
        reports.iter().map(|r| r.retransmits).sum::<usize>() > 0,
        "the outage left some frames unacknowledged"
    );
    let mut acked = BTreeSet::new();
    let mut resent = BTreeSet::new();
    for r in reports {
        acked.extend(r.acked);
        resent.extend(r.resent);
    }
    let missing: Vec<_> = acked.iter().filter(|id| !census.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not published: {missing:?}"
    );
    let dups: Vec<_> = census
        .iter()
        .filter(|(id, n)| **n > 1 && !resent.contains(*id))
        .collect();
    assert!(dups.is_empty(), "duplicates of records sent once: {dups:?}");
}
