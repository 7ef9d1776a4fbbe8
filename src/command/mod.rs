//! Commands to live devices, across a fleet of stateless pods.
//!
//! Backends produce `Command`s (protobuf, or canonical JSON when the payload starts with `{`)
//! keyed by IMEI, typed (`CommandType`) or custom text/bytes. Every pod reads every command
//! and every claim ([`ledger`]); the pod holding the device's newest session claims the
//! command, writes it once, and reports `CommandResult`s through the [`outbox`].
//!
//! - [`bus`]: where commands and claims travel (Kafka or MQTT);
//! - [`ledger`]: the rules every pod applies to the log, sans IO;
//! - [`dispatcher`]: runs the ledger against the bus, the sessions and the clock;
//! - [`messages`]: what the dispatcher and the sessions say to each other;
//! - [`session`]: a session's side, sans IO (queue, write handshake, answers, timeouts);
//! - [`outbox`]: results on their way to the broker, bounded and retried until delivered;
//! - [`template`]: per-model command texts from the device profiles.

pub mod bus;
mod by_device;
pub mod dispatcher;
pub mod ledger;
pub mod messages;
pub mod outbox;
pub mod session;
pub mod template;

pub use messages::Commands;

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

/// Longest command id, in bytes.
pub const MAX_COMMAND_ID_LEN: usize = 128;

/// Whether a command id is usable: 1 to 128 bytes, no control characters, and none of the
/// characters that mean something in an MQTT topic level (`/`, `+`, `#`), because an MQTT pod
/// keeps a pending command under `<prefix>/pending/<imei>/<command_id>`. UUIDs, ULIDs and
/// `order-17:retry-2` style ids all pass.
pub fn valid_command_id(id: &str) -> bool {
    !id.trim().is_empty()
        && id.len() <= MAX_COMMAND_ID_LEN
        && !id
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '+' | '#'))
}

/// A command from the bus after [`check`].
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// Valid: its IMEI is a device id and agrees with the topic or key it came on.
    Valid(Command),
    /// To be REJECTED with the reason. The command is the [`sanitized`] copy: every id in it
    /// is safe to put in a topic or key.
    Rejected(Command, String),
    /// No command id: nothing to report it under.
    Unreportable(String),
}

/// Checks a command before anything about it is published. `addressed_to` is the device the
/// transport addressed it to: the MQTT topic's last level, the Kafka record's key (`None` for
/// a record without a key). A body IMEI that disagrees with it is refused, so broker ACLs on
/// topics (or on who may produce which keys) confine a backend to its own devices; a body
/// without an IMEI takes the addressed one.
pub fn check(mut c: Command, addressed_to: Option<&[u8]>) -> Checked {
    if c.command_id.trim().is_empty() {
        return Checked::Unreportable("command without a command_id".into());
    }
    if let Some(to) = addressed_to {
        let to = String::from_utf8_lossy(to);
        if c.imei.is_empty() {
            c.imei = to.into_owned();
        } else if c.imei != to {
            let reason = format!(
                "imei \"{}\" in the body disagrees with the topic or key \"{}\"",
                crate::device_id::excerpt(&c.imei),
                crate::device_id::excerpt(&to)
            );
            c.imei = to.into_owned();
            return Checked::Rejected(sanitized(&c), reason);
        }
    }
    match ledger::validate(&c) {
        Ok(()) => Checked::Valid(c),
        Err(reason) => Checked::Rejected(sanitized(&c), reason),
    }
}

/// What a rejection carries: the ids made safe for topics and keys (an invalid IMEI becomes
/// [`crate::device_id::INVALID_KEY`], an invalid command id a bounded excerpt of itself), no
/// body.
pub fn sanitized(c: &Command) -> Command {
    Command {
        command_id: if valid_command_id(&c.command_id) {
            c.command_id.clone()
        } else {
            crate::device_id::excerpt(&c.command_id)
        },
        imei: if crate::device_id::is_valid(&c.imei) {
            c.imei.clone()
        } else {
            crate::device_id::INVALID_KEY.into()
        },
        body: None,
        ttl_secs: c.ttl_secs,
        created_at: c.created_at,
        r#type: c.r#type,
        ..Default::default()
    }
}

/// The running command flow: the sessions' handle, and what the gateway's drain needs.
pub struct CommandFlow {
    pub commands: Commands,
    outbox: std::sync::Arc<outbox::Outbox>,
    finish: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
    dispatcher: tokio::task::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
}

impl CommandFlow {
    /// The end of the drain, once the sessions are gone: waits until this pod holds and owes
    /// nothing (commands released or settled, results published and marked), at most until
    /// `deadline`, then stops the bus, the dispatcher and the outbox. What is left then (a
    /// broker that would not take it) is counted and settled by the other pods or this pod's
    /// next instance.
    pub async fn finish(self, deadline: std::time::Duration) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let settled = self.finish.send(tx).await.is_ok()
            && tokio::time::timeout(deadline, rx)
                .await
                .is_ok_and(|r| r.is_ok());
        if !settled {
            let left = self.outbox.len();
            if left > 0 {
                metrics::counter!(crate::metrics::COMMAND_DROPS, "what" => "result")
                    .increment(left as u64);
            }
            tracing::warn!(results_unpublished = left, "command flow not settled within the drain deadline; other pods settle what this one held");
        }
        self.stop.cancel();
        let _ = self.dispatcher.await;
    }
}

/// Starts the command flow for the configured broker: the bus, the ledger, the dispatcher and
/// the results outbox. `None` when commands are off or the sink has no broker (stdout).
/// Readiness requires the bus's Kafka clients to be alive; one that cannot be rebuilt requests
/// `abort`. `draining` is the gateway's shutdown: from then on the pod takes no new work; the
/// flow itself runs until [`CommandFlow::finish`].
pub fn start(
    config: &crate::config::Config,
    publisher: std::sync::Arc<crate::sink::Publisher>,
    draining: tokio_util::sync::CancellationToken,
    readiness: &crate::ops::Readiness,
    abort: &crate::abort::Abort,
) -> anyhow::Result<Option<CommandFlow>> {
    use crate::config::SinkKind;
    use std::sync::Arc;
    if !config.commands.enabled {
        return Ok(None);
    }
    let instance = instance_id();
    let cfg = ledger::LedgerConfig {
        gateway: config.gateway_name.clone(),
        instance: instance.clone(),
        default_ttl: config.commands.default_ttl,
        max_ttl: config.commands.max_ttl,
        max_entries: config.commands.max_pending,
        remember: std::time::Duration::from_secs(600),
        proposal_timeout: std::time::Duration::from_secs(10),
        lease: config.commands.lease,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let (writer, entries): (Arc<dyn bus::ClaimWriter>, _) = match config.sink {
        SinkKind::Stdout => return Ok(None),
        SinkKind::Kafka => {
            let client_id = format!("avlgate-{}-commands", config.gateway_name);
            let o = crate::broker::kafka_options(config, client_id.clone());
            let reader = crate::broker::kafka_reader_config(
                config,
                &format!("avlgate-commands-{instance}"),
                &client_id,
            );
            let (b, rx) = bus::KafkaBus::start(
                o.producer_config(),
                reader,
                config.kafka.commands_topic.clone(),
                config.commands.max_ttl,
                stop.clone(),
                abort,
            )?;
            for h in b.health() {
                readiness.require(h);
            }
            (Arc::new(b), rx)
        }
        SinkKind::Mqtt | SinkKind::Embedded => {
            let client_id = format!("avlgate-cmd-{}-{instance}", config.gateway_name);
            let o = crate::broker::mqtt_options(config, &client_id)?;
            let (b, rx) = bus::MqttBus::start(
                crate::broker::rumqttc_options(&o),
                config.topic_prefix.clone(),
                stop.clone(),
            );
            readiness.require(b.subscribed());
            (Arc::new(b), rx)
        }
    };
    let running = dispatcher::start(
        cfg,
        writer,
        entries,
        publisher,
        config.commands.outbox_capacity,
        draining,
        stop.clone(),
    );
    Ok(Some(CommandFlow {
        commands: running.commands,
        outbox: running.outbox,
        finish: running.finish,
        dispatcher: running.task,
        stop,
    }))
}

/// A random id for this process: a restarted pod keeps its name but is a new instance.
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{nanos}-{}", std::process::id());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
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

    fn cmd(imei: &str, text: &str) -> Command {
        Command {
            command_id: "c-1".into(),
            imei: imei.into(),
            body: Some(Body::Text(text.into())),
            ..Default::default()
        }
    }

    fn rejected(c: Checked) -> (Command, String) {
        match c {
            Checked::Rejected(c, why) => (c, why),
            other => panic!("not rejected: {other:?}"),
        }
    }

    /// Typed commands carry no text: they are valid without one (a CUSTOM one still needs it,
    /// and a typed one its parameters).
    #[test]
    fn typed_commands_need_no_text() {
        for j in [
            r#"{"commandId":"t-1","imei":"356307042441013","type":"COMMAND_TYPE_ENGINE_STOP"}"#,
            r#"{"commandId":"t-2","imei":"356307042441013","type":"COMMAND_TYPE_REBOOT"}"#,
            r#"{"commandId":"t-3","imei":"356307042441013","type":"COMMAND_TYPE_SET_REPORT_INTERVAL","reportIntervalSecs":30}"#,
            r#"{"commandId":"t-4","imei":"356307042441013","type":"COMMAND_TYPE_OUTPUT_SET","outputIndex":2,"outputOn":true}"#,
        ] {
            let c = parse(j.as_bytes()).unwrap();
            assert_eq!(c.body, None);
            assert!(matches!(check(c, None), Checked::Valid(_)), "{j}");
        }
        for (j, why) in [
            (
                r#"{"commandId":"t-5","imei":"356307042441013","type":"COMMAND_TYPE_CUSTOM"}"#,
                "text",
            ),
            (r#"{"commandId":"t-6","imei":"356307042441013"}"#, "text"),
            (
                r#"{"commandId":"t-7","imei":"356307042441013","type":"COMMAND_TYPE_SET_REPORT_INTERVAL"}"#,
                "report_interval_secs",
            ),
            (
                r#"{"commandId":"t-8","imei":"356307042441013","type":"COMMAND_TYPE_OUTPUT_SET","outputOn":true}"#,
                "output_index",
            ),
        ] {
            let (_, reason) = rejected(check(parse(j.as_bytes()).unwrap(), None));
            assert!(reason.contains(why), "{j}: {reason}");
        }
    }

    #[test]
    fn the_addressed_imei_fills_an_empty_body_and_a_different_one_is_refused() {
        let mut c = cmd("", "getinfo");
        let Checked::Valid(v) = check(c.clone(), Some(b"356307042441013")) else {
            panic!()
        };
        assert_eq!(v.imei, "356307042441013");
        c.imei = "356307042441013".into();
        assert_eq!(check(c.clone(), None), Checked::Valid(c.clone()));
        // The body names another device than the topic: refused, reported under the topic's.
        let (r, why) = rejected(check(c.clone(), Some(b"862000000000001")));
        assert_eq!(r.imei, "862000000000001");
        assert!(why.contains("disagrees"), "{why}");
        assert_eq!(r.body, None);
    }

    #[test]
    fn unsafe_imeis_are_reported_under_the_invalid_key_with_a_bounded_reason() {
        let huge = "1".repeat(20_000);
        for imei in ["a/b/c", "+", "#", "35630704244101\0", huge.as_str(), "ünit"] {
            let (r, why) = rejected(check(cmd(imei, "getinfo"), None));
            assert_eq!(r.imei, crate::device_id::INVALID_KEY, "{imei:?}");
            assert!(why.len() < 200, "bounded reason: {} bytes", why.len());
            // Same through a topic or key that carries the bad id.
            let (r, _) = rejected(check(cmd("", "getinfo"), Some(imei.as_bytes())));
            assert_eq!(r.imei, crate::device_id::INVALID_KEY);
        }
        // A valid topic with an unsafe body IMEI: reported under the topic's IMEI.
        let (r, _) = rejected(check(cmd("a/b", "x"), Some(b"356307042441013")));
        assert_eq!(r.imei, "356307042441013");
    }

    #[test]
    fn control_characters_in_texts_and_unsafe_command_ids_are_refused() {
        for text in [
            "get\0info",
            "a\u{2028}b",
            "a\u{0085}b",
            "a\r\nb",
            "tab\there",
        ] {
            let (_, why) = rejected(check(cmd("356307042441013", text), None));
            assert!(why.contains("control character"), "{text:?}: {why}");
        }
        for id in ["a/b", "a+", "#", "x\0", &"c".repeat(MAX_COMMAND_ID_LEN + 1)] {
            let mut c = cmd("356307042441013", "getinfo");
            c.command_id = id.to_string();
            let (r, why) = rejected(check(c, None));
            assert!(why.contains("command_id"), "{why}");
            assert!(r.command_id.len() <= 64, "{}", r.command_id);
        }
        let mut ok = cmd("356307042441013", "getinfo");
        ok.command_id = "0191d3c2-7e4f-7a51-9c1e-3f1d2a4b5c6d:retry-2".into();
        assert!(matches!(check(ok, None), Checked::Valid(_)));
    }
}
