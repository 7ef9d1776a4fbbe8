//! Commands test support: a backend producing commands, devices that answer them, results
//! read back.

use std::collections::BTreeMap;
use std::time::Duration;

use avlgate::proto::{command, Command, CommandResult, CommandStatus};
use avlgate::protocol::teltonika::{command as tcmd, frame as tframe};
use prost::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{Device, Subscriber};

pub const COMMANDS: &str = "avlgate.commands";
pub const RESULTS: &str = "avlgate.command-results";

pub fn command(id: &str, imei: &str, text: Option<&str>, ttl: u32) -> Command {
    Command {
        command_id: id.into(),
        imei: imei.into(),
        body: text.map(|t| command::Body::Text(t.into())),
        ttl_secs: ttl,
        ..Default::default()
    }
}

pub async fn send_command(p: &FutureProducer, id: &str, imei: &str, text: Option<&str>, ttl: u32) {
    let payload = command(id, imei, text, ttl).encode_to_vec();
    p.send(
        FutureRecord::to(COMMANDS).key(imei).payload(&payload),
        Duration::from_secs(5),
    )
    .await
    .expect("command produced");
}

/// A Teltonika device: logs in, then reads one Codec 12 command and answers it.
pub async fn command_device(addr: std::net::SocketAddr, imei: &str) -> Device {
    let mut dev = Device::connect(addr).await;
    dev.send(&tframe::encode_login(imei)).await;
    assert_eq!(dev.read_exact(1, 15).await, Some(vec![1]), "login acked");
    dev
}

pub async fn teltonika_answer(dev: &mut Device, expect: &str, answer: &str) {
    let head = dev.read_exact(8, 20).await.expect("a command frame");
    let len = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    let rest = dev.read_exact(len + 4, 5).await.unwrap();
    let msg = tcmd::parse(&rest[..len]).expect("valid Codec 12");
    assert_eq!(
        msg,
        tcmd::Message::Command {
            text: expect.as_bytes().to_vec()
        },
        "a Codec 12 command (type 0x05) with the text"
    );
    dev.send(&tframe::encode_tcp(&tcmd::encode_codec12(
        0x06,
        answer.as_bytes(),
    )))
    .await;
    // Codec 12 responses are not acknowledged by servers.
}

pub fn gt06_imei_bcd(imei: &str) -> Vec<u8> {
    let digits = format!("0{imei}");
    digits
        .as_bytes()
        .chunks(2)
        .map(|p| ((p[0] - b'0') << 4) | (p[1] - b'0'))
        .collect()
}

pub fn results(bootstrap: &str) -> BTreeMap<String, Vec<CommandResult>> {
    results_in(bootstrap, 2)
}

/// The results topic of `partitions` partitions read back, by command id.
pub fn results_in(bootstrap: &str, partitions: i32) -> BTreeMap<String, Vec<CommandResult>> {
    let mut by_id: BTreeMap<String, Vec<CommandResult>> = BTreeMap::new();
    for r in super::kafka::read_all(bootstrap, RESULTS, partitions, Duration::from_secs(3)) {
        let res = CommandResult::decode(&r.payload[..]).expect("CommandResult");
        assert_eq!(r.key, res.imei, "results are keyed by IMEI");
        by_id.entry(res.command_id.clone()).or_default().push(res);
    }
    by_id
}

/// The MQTT results that arrive within 3 s of each other are SENT, then RESPONDED.
pub async fn assert_sent_then_responded(results: &mut Subscriber) {
    let mut statuses = Vec::new();
    while let Some((_, p)) = results.next(3).await {
        statuses.push(CommandResult::decode(&p[..]).unwrap().status);
    }
    assert_eq!(
        statuses,
        vec![CommandStatus::Sent as i32, CommandStatus::Responded as i32]
    );
}

pub fn terminal(rs: &[CommandResult]) -> Vec<&CommandResult> {
    rs.iter().filter(|r| r.terminal).collect()
}

/// A typed command (`type` set, no body).
pub fn typed(id: &str, imei: &str, ty: avlgate::proto::CommandType) -> Command {
    Command {
        command_id: id.into(),
        imei: imei.into(),
        r#type: ty as i32,
        ttl_secs: 120,
        ..Default::default()
    }
}

/// Reads one Codec 12 command frame from a Teltonika device's socket: its text.
pub async fn teltonika_read_command(dev: &mut Device, secs: u64) -> Option<Vec<u8>> {
    let head = dev.read_exact(8, secs).await?;
    let len = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    let rest = dev.read_exact(len + 4, 5).await?;
    match tcmd::parse(&rest[..len]).expect("valid Codec 12") {
        tcmd::Message::Command { text } => Some(text),
        other => panic!("not a command: {other:?}"),
    }
}

/// Answers the last command on a Teltonika device's socket (Codec 12 type 0x06).
pub async fn teltonika_reply(dev: &mut Device, answer: &str) {
    dev.send(&tframe::encode_tcp(&tcmd::encode_codec12(
        0x06,
        answer.as_bytes(),
    )))
    .await;
}

/// A GT06 device logged in on `addr`.
pub async fn gt06_device(addr: std::net::SocketAddr, imei: &str) -> Device {
    use avlgate::protocol::gt06::frame as gt06;
    let mut dev = Device::connect(addr).await;
    dev.send(&gt06::encode(false, 0x01, &gt06_imei_bcd(imei), 1))
        .await;
    assert_eq!(
        dev.read_exact(10, 15).await.map(|v| v[3]),
        Some(0x01),
        "GT06 login acked"
    );
    dev
}

/// Reads a GT06 online command (`0x80`) and answers it (`0x15` echoing the server flag);
/// returns the command's text.
pub async fn gt06_answer(dev: &mut Device, answer: &str) -> String {
    use avlgate::protocol::gt06::frame as gt06;
    let head = dev.read_exact(3, 20).await.expect("GT06 command");
    assert_eq!(&head[..2], &[0x78, 0x78]);
    let rest = dev.read_exact(head[2] as usize + 2, 5).await.unwrap();
    assert_eq!(rest[0], 0x80);
    let flag = rest[2..6].to_vec();
    let text = String::from_utf8(rest[6..6 + rest[1] as usize - 4].to_vec()).unwrap();
    let mut content = vec![(4 + answer.len()) as u8];
    content.extend_from_slice(&flag);
    content.extend_from_slice(answer.as_bytes());
    content.extend_from_slice(&[0, 2]);
    dev.send(&gt06::encode(false, 0x15, &content, 7)).await;
    text
}

/// The MQTT results that arrive until the topic is quiet for `quiet` s, by command id.
pub async fn mqtt_results(
    sub: &mut Subscriber,
    quiet: u64,
) -> BTreeMap<String, Vec<CommandResult>> {
    let mut by_id: BTreeMap<String, Vec<CommandResult>> = BTreeMap::new();
    while let Some((topic, p)) = sub.next(quiet).await {
        let r = CommandResult::decode(&p[..]).expect("CommandResult");
        assert!(topic.ends_with(&format!("/{}", r.imei)), "{topic}: {r:?}");
        by_id.entry(r.command_id.clone()).or_default().push(r);
    }
    by_id
}

/// Waits until `id` has a terminal result in `got` (read from `sub`), at most `secs`.
pub async fn until_terminal(
    sub: &mut Subscriber,
    got: &mut BTreeMap<String, Vec<CommandResult>>,
    id: &str,
    secs: u64,
) -> CommandResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(r) = got.get(id).and_then(|rs| rs.iter().find(|r| r.terminal)) {
            return r.clone();
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no terminal result for {id} within {secs} s: {got:?}"
        );
        if let Ok(Some((_, p))) = tokio::time::timeout(left, sub.rx.recv()).await {
            let r = CommandResult::decode(&p[..]).expect("CommandResult");
            got.entry(r.command_id.clone()).or_default().push(r);
        }
    }
}

/// The statuses of `rs`, in order.
pub fn statuses(rs: &[CommandResult]) -> Vec<CommandStatus> {
    rs.iter()
        .map(|r| CommandStatus::try_from(r.status).unwrap())
        .collect()
}

/// The value of `avlgate_command_messages_dropped_total` (all labels) on `/metrics`; 0 when
/// nothing was ever dropped (the counter does not exist yet).
pub async fn command_drops(ops: std::net::SocketAddr) -> f64 {
    let (status, body) = super::http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with("avlgate_command_messages_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
