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
    let mut by_id: BTreeMap<String, Vec<CommandResult>> = BTreeMap::new();
    for r in super::kafka::read_all(bootstrap, RESULTS, 2, Duration::from_secs(3)) {
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
