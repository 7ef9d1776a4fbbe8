//! The embedded broker with credentials: anonymous and wrong logins are refused, the
//! gateway's own sink and command bus log in (a device is acknowledged and gets its command),
//! and a backend with the credentials works. Everything on loopback.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use avlgate::config::{Settings, SinkKind};
use avlgate::proto::{CommandResult, CommandStatus};
use avlgate::protocol::teltonika::{command as tcmd, frame as tframe, samples};
use common::*;
use prost::Message;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};

const USER: &str = "fleet";
const PASSWORD: &str = "correct horse battery staple";

/// Whether the broker refuses this login: `Some(true)` refused, `Some(false)` accepted.
async fn refused(broker: SocketAddr, login: Option<(&str, &str)>) -> bool {
    let mut o = MqttOptions::new(
        format!("probe-{}", free_port()),
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_keep_alive(Duration::from_secs(5));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (client, mut el) = AsyncClient::new(o, 10);
    client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return a.code != ConnectReturnCode::Success;
                }
                Ok(_) => {}
                // rumqttd closes the connection without a CONNACK on a bad login.
                Err(_) => return true,
            }
        }
    })
    .await;
    outcome.expect("the broker answered the login within 10 s")
}

/// Until the gateway's command bus is subscribed: a command without a body, published every
/// second under a new id, gets its REJECTED result on `results` once the bus reads commands.
pub async fn wait_for_the_command_bus(results: &mut Subscriber) {
    for i in 0..15 {
        let id = format!("bus-probe-{i}");
        results
            .publish(
                &format!("avlgate/commands/{IMEI}"),
                format!(r#"{{"commandId":"{id}"}}"#).into_bytes(),
            )
            .await;
        while let Some((_, p)) = results.next(1).await {
            if CommandResult::decode(&p[..]).is_ok_and(|r| r.command_id == id) {
                // Later probes' results may still come: let them pass.
                while results.next(1).await.is_some() {}
                return;
            }
        }
    }
    panic!("the gateway's command bus never read a command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_only_logged_in_clients_get_in_and_the_gateway_is_one() {
    let broker: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = TestGateway::start(Settings {
        sink: Some(SinkKind::Embedded),
        embedded_mqtt_listen: Some(broker),
        embedded_mqtt_username: Some(USER.into()),
        embedded_mqtt_password: Some(PASSWORD.into()),
        ..Default::default()
    })
    .await;
    // The broker starts on its own thread; the logged-in probe doubles as the wait for it.
    assert!(
        eventually(10, || async {
            !refused(broker, Some((USER, PASSWORD))).await
        })
        .await,
        "a client with the credentials is accepted"
    );
    assert!(
        refused(broker, None).await,
        "an anonymous client is refused"
    );
    assert!(
        refused(broker, Some((USER, "wrong"))).await,
        "a wrong password is refused"
    );
    assert!(
        refused(broker, Some(("avlgate", PASSWORD))).await,
        "another user name is refused"
    );

    // The gateway's sink logged in: a frame is acknowledged only after the broker's PUBACK.
    let mut events = Subscriber::connect_as(broker, "avlgate/events/#", USER, PASSWORD).await;
    let mut results =
        Subscriber::connect_as(broker, "avlgate/command-results/#", USER, PASSWORD).await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(&h(samples::LOGIN)).await;
    assert_eq!(dev.read_exact(1, 10).await, Some(vec![1]));
    dev.send(&h(samples::CODEC8)).await;
    assert_eq!(dev.read_exact(4, 20).await, Some(vec![0, 0, 0, 1]));
    let (topic, _) = events.next_event(10).await.expect("an event");
    assert_eq!(topic, format!("avlgate/events/{IMEI}"));

    // The command bus logged in too: a backend's command reaches the device. (The bus
    // connects on its own schedule; MQTT drops what is published before it subscribed.)
    wait_for_the_command_bus(&mut results).await;
    results
        .publish(
            &format!("avlgate/commands/{IMEI}"),
            br#"{"commandId":"auth-1","text":"getinfo"}"#.to_vec(),
        )
        .await;
    let head = dev.read_exact(8, 20).await.expect("the command frame");
    let len = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    let rest = dev.read_exact(len + 4, 5).await.unwrap();
    assert_eq!(
        tcmd::parse(&rest[..len]),
        Ok(tcmd::Message::Command {
            text: b"getinfo".to_vec()
        })
    );
    dev.send(&tframe::encode_tcp(&tcmd::encode_codec12(0x06, b"ok")))
        .await;
    let mut statuses = Vec::new();
    while let Some((_, p)) = results.next(3).await {
        statuses.push(CommandResult::decode(&p[..]).unwrap().status);
    }
    assert_eq!(
        statuses,
        vec![CommandStatus::Sent as i32, CommandStatus::Responded as i32]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_broker_is_anonymous_on_loopback() {
    let broker = embedded_broker();
    assert!(
        eventually(10, || async { !refused(broker, None).await }).await,
        "anonymous clients are accepted on loopback without credentials"
    );
}

#[test]
fn an_anonymous_broker_off_loopback_is_refused_before_anything_binds() {
    for listen in ["0.0.0.0:1883", "[::]:1883", "192.0.2.10:1883"] {
        let err = Settings {
            embedded_mqtt_listen: Some(listen.parse().unwrap()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("not loopback"), "{listen}: {err}");
        assert!(err.contains("--embedded-mqtt-password-file"), "{err}");
        // The same start function refuses too (for callers that skip the configuration).
        let e =
            avlgate::sink::embedded::start_with(listen.parse().unwrap(), 1024, None).unwrap_err();
        assert!(e.to_string().contains("not loopback"));
    }
    // With credentials (here from a file, as a mounted Secret) the address is accepted.
    let dir = std::env::temp_dir().join(format!("avlgate-embedded-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "from-a-secret\n").unwrap();
    let c = Settings {
        embedded_mqtt_listen: Some("0.0.0.0:1883".parse().unwrap()),
        embedded_mqtt_password_file: Some(file.clone()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let auth = c.embedded_mqtt_auth.expect("credentials");
    assert_eq!(auth.username, "avlgate");
    assert_eq!(auth.password.expose(), "from-a-secret");
    assert!(
        !format!("{auth:?}").contains("from-a-secret"),
        "kept out of Debug"
    );
    // Both sources at once, or an empty password, are mistakes.
    assert!(Settings {
        embedded_mqtt_password: Some("x".into()),
        embedded_mqtt_password_file: Some(file.clone()),
        ..Default::default()
    }
    .resolve()
    .is_err());
    std::fs::write(&file, "\n").unwrap();
    assert!(Settings {
        embedded_mqtt_password_file: Some(file),
        ..Default::default()
    }
    .resolve()
    .is_err());
    // Another sink does not start the broker: its address does not matter.
    assert!(Settings {
        sink: Some(SinkKind::Stdout),
        embedded_mqtt_listen: Some("0.0.0.0:1883".parse().unwrap()),
        ..Default::default()
    }
    .resolve()
    .is_ok());
    let _ = std::fs::remove_dir_all(dir);
}
