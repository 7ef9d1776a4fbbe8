//! Metric names, in one place. Labels come from small fixed sets (protocol, transport,
//! outcome, error kind), never from device identifiers.

/// Connections accepted, by `transport` (UDP: new peers).
pub const CONNECTIONS_ACCEPTED: &str = "avlgate_connections_accepted_total";
/// Connections open now, by `protocol` and `transport`.
pub const CONNECTIONS_OPEN: &str = "avlgate_connections_open";
/// Detection outcomes, by `transport` and `outcome` (a protocol name, `unknown`, `timeout`,
/// `closed`).
pub const DETECTIONS: &str = "avlgate_detections_total";
/// Frames decoded, by `protocol`.
pub const FRAMES_DECODED: &str = "avlgate_frames_decoded_total";
/// Events (records) produced by decoding, by `protocol`.
pub const RECORDS_DECODED: &str = "avlgate_records_decoded_total";
/// Decode errors, by `protocol` and `kind` (see `protocol::ErrorKind::label`).
pub const DECODE_ERRORS: &str = "avlgate_decode_errors_total";
/// Device input the decoder accepted although it bends the protocol (one unambiguous
/// meaning: a padded number, a coordinate with 60 or more minutes), by `protocol` and `kind`
/// (the protocol's quirk label, see `protocol::Frame::lenient`).
pub const LENIENT_INPUT: &str = "avlgate_lenient_input_total";
/// Replies (ACKs and negative replies) written to devices, by `protocol`.
pub const REPLIES_SENT: &str = "avlgate_replies_sent_total";
/// Records handed to the sink and not yet confirmed.
pub const SINK_IN_FLIGHT_RECORDS: &str = "avlgate_sink_in_flight_records";
/// Encoded bytes handed to the sink and not yet confirmed.
pub const SINK_IN_FLIGHT_BYTES: &str = "avlgate_sink_in_flight_bytes";
/// Time from handing a frame's records to the sink until the broker confirmed all of them.
pub const SINK_DELIVERY_SECONDS: &str = "avlgate_sink_delivery_seconds";
/// Records the broker confirmed, by `sink`.
pub const SINK_DELIVERED: &str = "avlgate_sink_delivered_records_total";
/// Delivery failures, by `sink` and `reason` (`timeout`, `disconnected`, `rejected`, `closed`).
pub const SINK_ERRORS: &str = "avlgate_sink_errors_total";
/// 1 while the sink is connected to its broker and (Kafka) delivering: not stalled, its
/// producer not being rebuilt.
pub const SINK_CONNECTED: &str = "avlgate_sink_connected";
/// 1 while a Kafka client is dead after a librdkafka fatal error and not yet rebuilt, by
/// `client` (`events`, `command_claims`, `command_reader`).
pub const KAFKA_CLIENT_FAILED: &str = "avlgate_kafka_client_failed";
/// Kafka clients rebuilt after a fatal error, by `client` and `outcome` (`ok`, `failed`).
pub const KAFKA_CLIENT_REBUILDS: &str = "avlgate_kafka_client_rebuilds_total";
/// Sessions ended, by `protocol`, `transport` and `reason`.
pub const SESSIONS_CLOSED: &str = "avlgate_sessions_closed_total";
/// UDP peers tracked now (identified or not), all sockets of the pod.
pub const UDP_PEERS: &str = "avlgate_udp_peers";
/// UDP datagrams dropped before decoding, by `reason` (`peer_queue_full`, `max_udp_peers`,
/// `max_udp_peers_per_ip`, `trailing_bytes`).
pub const UDP_DROPPED: &str = "avlgate_udp_datagrams_dropped_total";
/// Positive replies (ACKs) written after the sink confirmed a frame, by `protocol`.
pub const ACKS_SENT: &str = "avlgate_acks_sent_total";
/// Connections (or UDP devices) refused, by `transport` and `reason`: `max_connections`,
/// `max_connections_per_ip`, `connect_rate`, `proxy_header`, `tls_handshake`, `not_allowed`,
/// ... A relayed device (Wialon Retranslator) that is not allowed counts once per frame.
pub const CONNECTIONS_REJECTED: &str = "avlgate_connections_rejected_total";
/// Sessions ended because their IMEI logged in again on another connection, by `protocol`.
pub const SESSIONS_REPLACED: &str = "avlgate_sessions_replaced_total";
/// Live TCP sessions of identified devices (the IMEI registry's size).
pub const SESSIONS_REGISTERED: &str = "avlgate_sessions_registered";
/// TLS handshakes, by `outcome` (`ok`, `failed`, `timeout`).
pub const TLS_HANDSHAKES: &str = "avlgate_tls_handshakes_total";
/// Reloads of a watched file, by `file` (`allowlist`, `tls`) and `outcome` (`ok`, `failed`).
pub const RELOADS: &str = "avlgate_config_reloads_total";
/// IMEIs on the allow-list.
pub const ALLOWLIST_ENTRIES: &str = "avlgate_allowlist_entries";
/// 1 while `/readyz` answers 200.
pub const READY: &str = "avlgate_ready";
/// Commands by `status`: `received`, `unreadable`, and each result status (`sent`,
/// `responded`, `expired`, `rejected`).
pub const COMMANDS: &str = "avlgate_commands_total";
/// Command-flow messages lost, by `what`: `update` (a session's report found the dispatcher
/// gone), `result` (a result still unpublished when the drain deadline ended the process; the
/// other pods settle its command). Zero in a healthy run; the tests assert it.
pub const COMMAND_DROPS: &str = "avlgate_command_messages_dropped_total";
/// Command results in the outbox: queued for the broker, or room reserved for them.
pub const COMMAND_OUTBOX: &str = "avlgate_command_outbox_results";
/// Batches of command results the broker did not confirm (each is retried until it does).
pub const COMMAND_OUTBOX_RETRIES: &str = "avlgate_command_outbox_retries_total";
/// Claims held back because the outbox had no room for the results they would bring
/// (backpressure: made again shortly).
pub const COMMAND_DEFERRED: &str = "avlgate_command_claims_deferred_total";
/// Commands this pod settled for a pod that stopped, by `outcome`: `redelivered` (not
/// written), `expired` (`holder lost`), `republished` (its decided result).
pub const COMMANDS_SETTLED: &str = "avlgate_commands_settled_total";
/// Commands this pod's sessions hold (queued, or written and awaiting an answer).
pub const COMMAND_HELD: &str = "avlgate_commands_held";
/// Commands this pod's ledger tracks, fleet-wide (waiting, in progress, done in the last 10
/// minutes); at [`COMMAND_LEDGER_MAX`] new commands are rejected.
pub const COMMAND_LEDGER_COMMANDS: &str = "avlgate_command_ledger_commands";
/// `--command-max-pending`: the cap on [`COMMAND_LEDGER_COMMANDS`].
pub const COMMAND_LEDGER_MAX: &str = "avlgate_command_ledger_commands_max";
/// Devices with a live session announced by any pod, as this pod's ledger knows them (one
/// announcement each, ~116 B on every pod).
pub const COMMAND_LEDGER_DEVICES: &str = "avlgate_command_ledger_devices";

/// Bucket bounds (seconds) for [`SINK_DELIVERY_SECONDS`]: a healthy broker confirms in a few
/// milliseconds; the top buckets show an outage approaching the 30 s delivery deadline.
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
