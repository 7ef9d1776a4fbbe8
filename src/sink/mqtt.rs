//! `--sink mqtt` (and the transport of `--sink embedded`): QoS 1 publishes, a record counts as
//! delivered when the broker's PUBACK for it arrived.
//!
//! Why not `rumqttc::AsyncClient`: its event loop reports PUBACKs by packet id but never says
//! which `publish()` call got which id, and on a clean-session reconnect it silently drops the
//! requests it had queued, so per-record delivery cannot be known exactly. This module drives
//! the connection itself with rumqttc's own MQTT 3.1.1 packet codec (`mqttbytes::v4`): it
//! assigns packet ids, keeps one waiter per id, and fails every waiter when the connection
//! drops (those frames are not acknowledged, so the devices resend them). Then it reconnects
//! with backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{Codec, Connect, ConnectReturnCode, Packet, PubAck, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Delivery, OutMessage, Sink, SinkError, Stream};
use crate::metrics as m;

/// Connection settings parsed from `mqtt://[user[:password]@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttOptions {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: String,
    pub keep_alive: Duration,
    /// Topic prefix: events go to `<prefix>/events/<imei>`.
    pub topic_prefix: String,
    /// Largest packet accepted from or sent to the broker.
    pub max_packet_bytes: usize,
}

impl MqttOptions {
    /// Parses an `mqtt://` URL.
    pub fn from_url(url: &str, client_id: &str, topic_prefix: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| format!("{url}: only mqtt://host:port URLs are supported"))?;
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (username, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
                None => (Some(percent_decode(a)), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse().map_err(|_| format!("{url}: bad port"))?,
            ),
            _ => (hostport.trim_matches(['[', ']']).to_string(), 1883),
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(MqttOptions {
            host,
            port,
            username,
            password,
            client_id: client_id.to_string(),
            keep_alive: Duration::from_secs(30),
            topic_prefix: topic_prefix.to_string(),
            max_packet_bytes: 16 * 1024 * 1024,
        })
    }

    /// The MQTT topic of a message.
    pub fn topic(&self, stream: Stream, key: &str) -> String {
        let kind = match stream {
            Stream::Events => "events",
            Stream::CommandResults => "command-results",
        };
        format!("{}/{kind}/{key}", self.topic_prefix)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Request {
    publish: Publish,
    done: oneshot::Sender<Result<(), SinkError>>,
}

/// The MQTT sink handle; the connection runs in its own task.
pub struct MqttSink {
    tx: mpsc::Sender<Request>,
    connected: Arc<AtomicBool>,
    options: Arc<MqttOptions>,
}

/// How many publishes may await their PUBACK at once on the connection.
const MAX_INFLIGHT: usize = 4096;

impl MqttSink {
    /// Starts the connection task. It reconnects until `shutdown` is cancelled.
    pub fn start(options: MqttOptions, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(MAX_INFLIGHT);
        let connected = Arc::new(AtomicBool::new(false));
        let options = Arc::new(options);
        tokio::spawn(run(options.clone(), rx, connected.clone(), shutdown));
        MqttSink {
            tx,
            connected,
            options,
        }
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn send(&self, messages: Arc<[OutMessage]>) -> Delivery {
        let tx = self.tx.clone();
        let options = self.options.clone();
        Box::pin(async move {
            let mut waiters = Vec::with_capacity(messages.len());
            for msg in messages.iter() {
                let (done, rx) = oneshot::channel();
                let publish = Publish::from_bytes(
                    options.topic(msg.stream, &msg.key),
                    QoS::AtLeastOnce,
                    msg.payload.clone(),
                );
                tx.send(Request { publish, done })
                    .await
                    .map_err(|_| SinkError::Closed)?;
                waiters.push(rx);
            }
            for w in waiters {
                w.await.map_err(|_| SinkError::Closed)??;
            }
            Ok(())
        })
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Connection failures before the first connection are logged at debug for this long.
const STARTUP_GRACE: Duration = Duration::from_secs(3);

async fn run(
    options: Arc<MqttOptions>,
    mut rx: mpsc::Receiver<Request>,
    connected: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let started = tokio::time::Instant::now();
    let mut ever_connected = false;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = connect(&options) => r,
        };
        match attempt {
            Ok(framed) => {
                info!(host = %options.host, port = options.port, "connected to the MQTT broker");
                ever_connected = true;
                backoff = Duration::from_millis(100);
                connected.store(true, Ordering::Relaxed);
                metrics::gauge!(m::SINK_CONNECTED).set(1.0);
                let end = serve(&options, framed, &mut rx, &shutdown).await;
                connected.store(false, Ordering::Relaxed);
                metrics::gauge!(m::SINK_CONNECTED).set(0.0);
                match end {
                    End::Shutdown => return,
                    End::Lost(why) => {
                        warn!(%why, "lost the MQTT broker connection; unconfirmed records are not acknowledged")
                    }
                }
            }
            // The embedded broker listens a moment after the sink first dials, and a broker
            // started beside the gateway may too: a refusal is news only once it lasts.
            Err(why) if ever_connected || started.elapsed() >= STARTUP_GRACE => {
                warn!(host = %options.host, port = options.port, %why, retry_in = ?backoff, "cannot connect to the MQTT broker")
            }
            Err(why) => {
                debug!(host = %options.host, port = options.port, %why, retry_in = ?backoff, "MQTT broker not reachable yet")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

type Conn = Framed<TcpStream, Codec>;

async fn connect(o: &MqttOptions) -> Result<Conn, String> {
    let io = async {
        let stream = TcpStream::connect((o.host.as_str(), o.port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let codec = Codec {
            max_incoming_size: o.max_packet_bytes,
            max_outgoing_size: o.max_packet_bytes,
        };
        let mut framed = Framed::new(stream, codec);
        let mut c = Connect::new(o.client_id.clone());
        c.keep_alive = o.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16;
        c.clean_session = true;
        if let Some(u) = &o.username {
            c.set_login(u.clone(), o.password.clone().unwrap_or_default());
        }
        framed
            .send(Packet::Connect(c))
            .await
            .map_err(|e| e.to_string())?;
        match framed.next().await {
            Some(Ok(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => Ok(framed),
            Some(Ok(Packet::ConnAck(ack))) => {
                Err(format!("broker refused the connection: {:?}", ack.code))
            }
            Some(Ok(p)) => Err(format!("expected CONNACK, got {p:?}")),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("connection closed before CONNACK".into()),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| "connect timed out".to_string())?
}

enum End {
    Shutdown,
    Lost(String),
}

/// Runs one connection: writes queued publishes, matches PUBACKs to waiters, keeps alive.
async fn serve(
    o: &MqttOptions,
    mut framed: Conn,
    rx: &mut mpsc::Receiver<Request>,
    shutdown: &CancellationToken,
) -> End {
    let mut inflight: HashMap<u16, oneshot::Sender<Result<(), SinkError>>> = HashMap::new();
    let mut next_pkid: u16 = 0;
    let mut ping = tokio::time::interval(o.keep_alive / 2);
    ping.tick().await;
    let mut awaiting_pong = false;
    let end = loop {
        tokio::select! {
            _ = shutdown.cancelled(), if inflight.is_empty() && rx.is_empty() => {
                let _ = framed.send(Packet::Disconnect).await;
                break End::Shutdown;
            }
            packet = framed.next() => match packet {
                Some(Ok(Packet::PubAck(PubAck { pkid }))) => {
                    if let Some(done) = inflight.remove(&pkid) {
                        let _ = done.send(Ok(()));
                    }
                }
                Some(Ok(Packet::PingResp)) => awaiting_pong = false,
                Some(Ok(Packet::Publish(p))) => {
                    // Nothing is subscribed on this connection; acknowledge so a broker that
                    // sends anyway is not left waiting.
                    if p.qos == QoS::AtLeastOnce {
                        let _ = framed.send(Packet::PubAck(PubAck::new(p.pkid))).await;
                    }
                }
                Some(Ok(other)) => debug!(?other, "ignored MQTT packet"),
                Some(Err(e)) => break End::Lost(e.to_string()),
                None => break End::Lost("broker closed the connection".into()),
            },
            req = rx.recv(), if inflight.len() < MAX_INFLIGHT => {
                let Some(first) = req else { break End::Shutdown };
                // Write a batch of queued publishes, then flush once.
                let mut batch = vec![first];
                while batch.len() < 256 && inflight.len() + batch.len() < MAX_INFLIGHT {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let mut failed = None;
                for Request { mut publish, done } in batch {
                    if done.is_closed() {
                        continue;
                    }
                    next_pkid = next_free_pkid(next_pkid, &inflight);
                    publish.pkid = next_pkid;
                    if let Err(e) = framed.feed(Packet::Publish(publish)).await {
                        let _ = done.send(Err(SinkError::Rejected(e.to_string())));
                        failed = Some(e.to_string());
                        continue;
                    }
                    inflight.insert(next_pkid, done);
                }
                if let Err(e) = framed.flush().await {
                    break End::Lost(e.to_string());
                }
                if let Some(e) = failed {
                    debug!(%e, "a publish could not be encoded");
                }
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    break End::Lost("no PINGRESP within the keep-alive".into());
                }
                if let Err(e) = framed.send(Packet::PingReq).await {
                    break End::Lost(e.to_string());
                }
                awaiting_pong = true;
            }
        }
    };
    for (_, done) in inflight.drain() {
        let _ = done.send(Err(SinkError::Disconnected));
    }
    end
}

/// The next packet id after `last` that has no publish awaiting its PUBACK (ids are 1..=65535).
fn next_free_pkid(
    last: u16,
    inflight: &HashMap<u16, oneshot::Sender<Result<(), SinkError>>>,
) -> u16 {
    let mut id = last;
    loop {
        id = id.wrapping_add(1).max(1);
        if !inflight.contains_key(&id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o =
            MqttOptions::from_url("mqtt://user:p%40ss@broker.local:1884", "c", "avlgate").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("broker.local", 1884));
        assert_eq!(o.username.as_deref(), Some("user"));
        assert_eq!(o.password.as_deref(), Some("p@ss"));
        let o = MqttOptions::from_url("mqtt://127.0.0.1", "c", "x").unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.username),
            ("127.0.0.1", 1883, None)
        );
        let o = MqttOptions::from_url("mqtt://[::1]:1883", "c", "x").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 1883));
        assert!(MqttOptions::from_url("http://x", "c", "x").is_err());
        assert_eq!(o.topic(Stream::Events, "123"), "x/events/123");
    }

    #[test]
    fn pkids_skip_those_in_flight_and_zero() {
        let (tx, _rx) = oneshot::channel();
        let mut m = HashMap::new();
        m.insert(1u16, tx);
        assert_eq!(next_free_pkid(u16::MAX, &m), 2);
        assert_eq!(next_free_pkid(5, &m), 6);
    }
}
