//! Device profiles on a running gateway: a device's values go through its profile, and
//! changing the profile file changes the mapping of the next frame without a restart (a
//! broken file keeps the previous mapping).

mod common;

use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::proto::TelemetryEvent;
use avlgate::protocol::teltonika::avl::{self, Codec, IoValue, Record};
use avlgate::protocol::teltonika::frame as tframe;
use avlgate::sink::memory::MemorySink;
use common::*;

/// A Codec 8 frame of one record with IO 9 (analog input 1 on FMB devices) = 1234.
fn frame(k: u64) -> Vec<u8> {
    tframe::encode_tcp(&avl::encode(
        Codec::C8,
        &[Record {
            timestamp_ms: 1_795_000_000_000 + k * 1000,
            priority: 0,
            longitude: 253_910_000,
            latitude: 546_820_000,
            altitude: 110,
            angle: 90,
            satellites: 9,
            speed: 42,
            event_io: 0,
            generation_type: None,
            io: vec![(9, IoValue::U16(1234))],
        }],
    ))
}

fn write(path: &std::path::Path, text: &str, n: u64) {
    std::fs::write(path, text).unwrap();
    // Reloads look at (modified time, length): make each version's stamp distinct.
    let t = std::time::SystemTime::now() + Duration::from_secs(n);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// The next record event the sink received (lifecycle events skipped).
async fn next_record(sink: &MemorySink) -> TelemetryEvent {
    for _ in 0..100 {
        if let Some(e) = memory_events(sink).into_iter().find(|e| !e.raw.is_empty()) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no record");
}

async fn generation_reaches(gw: &TestGateway, n: u64) {
    let profiles = gw.shared.protocols.profiles.clone();
    let wait = async {
        while profiles.generation() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("profiles reloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_profile_file_changes_the_mapping_of_a_running_gateway() {
    let dir = std::env::temp_dir().join(format!("avlgate-profiles-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profiles.toml");
    // Version 1: this device is an FMB whose IO 9 is a fuel sensor, in 0.1 %.
    write(
        &path,
        &format!(
            "[profiles.fuel]\nextends = \"fmb\"\n[profiles.fuel.ids.9]\n\
             field = \"fuel_level_percent\"\nscale = 0.1\n\
             [[devices]]\nprofile = \"fuel\"\nimeis = [\"{IMEI}\"]\n"
        ),
        1,
    );
    let sink = MemorySink::new();
    let gw = TestGateway::with_sink(
        Settings {
            device_profiles: Some(path.clone()),
            ..Default::default()
        },
        Arc::new(sink.clone()),
        |c| c.reload_interval = Duration::from_millis(100),
    )
    .await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(&tframe::encode_login(IMEI)).await;
    assert_eq!(dev.read_exact(1, 10).await, Some(vec![1]));

    dev.send(&frame(1)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    let e = next_record(&sink).await;
    assert_eq!(e.telemetry().fuel_level_percent, Some(123.4));
    assert!(e.telemetry().analog_inputs_volts.is_empty());

    // Version 2, same connection: the device's profile now reads IO 9 as temperature sensor 2
    // in 0.1 °C.
    write(
        &path,
        &format!(
            "[profiles.fuel]\nextends = \"fmb\"\n[profiles.fuel.ids.9]\n\
             field = \"temperatures_celsius\"\nindex = 2\nscale = 0.1\n\
             [[devices]]\nprofile = \"fuel\"\nimeis = [\"{IMEI}\"]\n"
        ),
        2,
    );
    // Wait for the reload (the next frame after it uses the new rules).
    generation_reaches(&gw, 1).await;
    dev.send(&frame(2)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    let e = next_record(&sink).await;
    assert_eq!(e.telemetry().fuel_level_percent, None);
    assert_eq!(e.telemetry().temperatures_celsius.get(&2), Some(&123.4));

    // Version 3 is broken: the gateway keeps version 2 (after ten reload periods, the
    // generation has not moved and the mapping is the same).
    write(&path, "[profiles.fuel]\nextends = \"nope\"\n", 3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(gw.shared.protocols.profiles.generation(), 1);
    dev.send(&frame(3)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    let e = next_record(&sink).await;
    assert_eq!(e.telemetry().temperatures_celsius.get(&2), Some(&123.4));
    gw.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
