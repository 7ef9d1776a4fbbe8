//! TLS on the device port, with a certificate generated at test time; plain devices on the
//! same port; certificate reload. Loopback only.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::proto::EventKind;
use avlgate::protocol::teltonika::samples;
use avlgate::sink::memory::MemorySink;
use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

fn write_cert(dir: &Path) -> CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), c.key_pair.serialize_pem()).unwrap();
    c.cert.der().clone()
}

fn connector(trusted: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("avlgate-tls-it-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teltonika_over_tls_and_plain_devices_on_the_same_port() {
    let dir = temp_dir("same-port");
    let cert = write_cert(&dir);
    let sink = MemorySink::new();
    let gw = TestGateway::with_sink(
        Settings {
            tls_cert: Some(dir.join("tls.crt")),
            tls_key: Some(dir.join("tls.key")),
            ..Default::default()
        },
        Arc::new(sink.clone()),
        |_| {},
    )
    .await;

    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = connector(&cert)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the gateway");
    tls.write_all(&h(samples::LOGIN)).await.unwrap();
    let mut one = [0u8; 1];
    tls.read_exact(&mut one).await.unwrap();
    assert_eq!(one, [1]);
    tls.write_all(&h(samples::CODEC8)).await.unwrap();
    let mut ack = [0u8; 4];
    tls.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0, 0, 0, 1]);
    let events = memory_events(&sink);
    assert!(events
        .iter()
        .any(|e| e.kind == EventKind::Status as i32 && e.imei == IMEI));

    // A plain Wialon device on the same port.
    let mut plain = Device::connect(gw.addr).await;
    plain.send(b"#L#356307042441014;NA\r\n").await;
    assert_eq!(plain.read_line(10).await.as_deref(), Some("#AL#1\r\n"));

    // A client that does not trust the certificate fails its handshake; the gateway closes.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    assert!(connector(other.cert.der())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .is_err());
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = temp_dir("reload");
    let first = write_cert(&dir);
    let gw = TestGateway::with_sink(
        Settings {
            tls_cert: Some(dir.join("tls.crt")),
            tls_key: Some(dir.join("tls.key")),
            ..Default::default()
        },
        Arc::new(MemorySink::new()),
        |c| c.reload_interval = Duration::from_millis(100),
    )
    .await;
    let handshake = |trusted: CertificateDer<'static>| async move {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        connector(&trusted)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .is_ok()
    };
    assert!(handshake(first.clone()).await);
    // A PEM written with a trailing newline has another size: the change is seen even within
    // one mtime tick.
    let second = {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(
            dir.join("tls.key"),
            format!("{}\n", c.key_pair.serialize_pem()),
        )
        .unwrap();
        std::fs::write(dir.join("tls.crt"), format!("{}\n", c.cert.pem())).unwrap();
        c.cert.der().clone()
    };
    let h2 = &handshake;
    assert!(
        eventually(10, || async { h2(second.clone()).await }).await,
        "the new certificate is served"
    );
    assert!(!handshake(first).await, "the old one is not");
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
