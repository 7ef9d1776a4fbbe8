//! The `avlgate` binary: `serve` runs the gateway, `decode` explains captured frames,
//! `simulate` runs virtual devices against a gateway; `kafka-mock` and `kafka-produce-bench`
//! are development tools for load and fault runs (see `devtools`), `udp-flood` one for the UDP
//! flood run (see `flood`).

mod devtools;
mod flood;

use std::io::BufRead;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

use avlgate::config::{LogFormat, Settings};
use avlgate::decode::{decode_frames, parse_frame};
use avlgate::proto::Transport;
use avlgate::server::Gateway;

/// mimalloc: many small, short-lived allocations per record (see Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "avlgate",
    version,
    about = "One-port gateway for GPS trackers: Teltonika, Wialon IPS, Concox GT06 to protobuf events on MQTT or Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(Box<Settings>),
    /// Decode captured frames as the server would, printing events and replies.
    Decode {
        /// How the frames arrived: tcp (one stream, state carried across frames) or udp (each
        /// frame a datagram).
        #[arg(long, value_enum, default_value = "tcp")]
        transport: TransportArg,
        /// Frames as hex, or text for text protocols; `-` reads one frame per line from stdin.
        #[arg(required = true)]
        frames: Vec<String>,
    },
    /// Run virtual devices against a gateway: load test and end-to-end trial without hardware.
    Simulate(Box<avlgate::simulate::SimulateArgs>),
    /// List the protocols, their transports, simulators and settings (Markdown; the README's
    /// protocol tables are this output).
    Protocols,
    /// Print the vocabulary against every protocol: which device value feeds each field and
    /// alarm (Markdown; docs/schema.md holds this output).
    Vocabulary,
    /// Development/test tool: an in-process librdkafka MOCK Kafka cluster on 127.0.0.1 (in
    /// memory, not a broker). Prints `bootstrap=...`, then takes `down [id|all]`, `up [id|all]`,
    /// `rtt <id|all> <ms>`, `quit` on stdin.
    KafkaMock(devtools::KafkaMockArgs),
    /// Development/benchmark tool: produce messages straight to Kafka with the gateway's
    /// producer settings and print records/s (the baseline of the end-to-end load run).
    KafkaProduceBench(Box<devtools::ProduceBenchArgs>),
    /// Development/benchmark tool: create topics on a real broker and count their records by
    /// reading them (the load runs count what reached the broker this way).
    KafkaTopics(devtools::KafkaTopicsArgs),
    /// Load-test tool: one UDP datagram from each of many source ports of one loopback
    /// address (what a spoofed flood costs the gateway; bench/udp-flood.sh).
    UdpFlood(flood::UdpFloodArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Tcp,
    Udp,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => {
            let config = settings.load()?;

            init_tracing(config.log_format);
            raise_nofile_limit();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(config))
        }
        Command::Decode { transport, frames } => {
            init_tracing(LogFormat::Text);
            let mut list = Vec::new();
            for f in frames {
                if f == "-" {
                    for line in std::io::stdin().lock().lines() {
                        let line = line.context("reading stdin")?;
                        if !line.trim().is_empty() {
                            list.push(parse_frame(&line));
                        }
                    }
                } else {
                    list.push(parse_frame(&f));
                }
            }
            let transport = match transport {
                TransportArg::Tcp => Transport::Tcp,
                TransportArg::Udp => Transport::Udp,
            };
            let config = Settings::default().resolve()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let out = rt.block_on(decode_frames(&list, transport, &config));
            let mut failed = false;
            for lines in out {
                for line in lines {
                    failed |= matches!(
                        line,
                        avlgate::decode::Output::Error(_) | avlgate::decode::Output::Unknown(_)
                    );
                    println!("{line}");
                }
            }
            std::process::exit(if failed { 1 } else { 0 });
        }
        Command::Vocabulary => {
            print!("{}", avlgate::vocab::doc::markdown());
            Ok(())
        }
        Command::Protocols => {
            print!("{}", avlgate::protocol::catalog::markdown());
            Ok(())
        }
        Command::Simulate(args) => {
            init_tracing(LogFormat::Text);
            raise_nofile_limit();
            let options = args.options()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let summary = rt.block_on(async {
                let cancel = CancellationToken::new();
                let stop = cancel.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    stop.cancel();
                });
                avlgate::simulate::run(options, cancel).await
            })?;
            if args.json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                print!("{summary}");
            }
            // Exit 1 when a device never connected, a frame went unacknowledged or an ACK was
            // wrong, so scripts can use the run as a check.
            std::process::exit(if summary.clean() { 0 } else { 1 });
        }
        Command::UdpFlood(args) => {
            println!("{}", flood::run(&args)?);
            Ok(())
        }
        Command::KafkaMock(args) => {
            init_tracing(LogFormat::Text);
            devtools::kafka_mock(&args)
        }
        Command::KafkaTopics(args) => {
            init_tracing(LogFormat::Text);
            devtools::kafka_topics(&args)
        }
        Command::KafkaProduceBench(args) => {
            init_tracing(LogFormat::Text);
            let r = devtools::produce_bench(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "produced {} messages ({} delivered, {} failed; {} keys, {:.0} payload bytes on average) in {:.3} s: {:.0} records/s",
                    r.messages,
                    r.delivered,
                    r.failed,
                    r.distinct_keys,
                    r.avg_payload_bytes,
                    r.elapsed_secs,
                    r.records_per_sec
                );
            }
            std::process::exit(if r.failed == 0 { 0 } else { 1 });
        }
    }
}

async fn serve(config: avlgate::config::Config) -> anyhow::Result<()> {
    let prometheus = avlgate::ops::install_prometheus()?;
    let ops_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("starting the metrics listener on {}", config.metrics_listen))?;
    let shutdown = CancellationToken::new();
    let gateway = Gateway::bind(config, shutdown.clone()).await?;
    // Serves until the process exits: /readyz answers 503 through the drain.
    tokio::spawn(avlgate::ops::serve(
        ops_listener,
        prometheus,
        gateway.readiness(),
        CancellationToken::new(),
    ));
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        signals.cancel();
    });
    gateway.run().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rumqttd=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Tens of thousands of devices need as many descriptors: raise the soft limit to the hard one.
fn raise_nofile_limit() {
    #[cfg(unix)]
    {
        if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
            if soft < hard {
                let _ = rlimit::Resource::NOFILE.set(hard, hard);
            }
        }
    }
}
