//! Cell-tower and Wi-Fi packets: the multi-cell LBS family (`0x18`, `0x28`, `0x2E`, `0x24`,
//! `0x2C`, `0xA1`, `0xA2`) and the CRC-less form of the Wi-Fi packets (`0x17`, `0x69`) whose
//! byte 2 is the Wi-Fi count.
//!
//! All become kind LBS events: every cell in `cell_towers` (serving cell first) with the
//! signal byte as the device sends it, the access points in `wifi_access_points`.

use super::block::{self, Cell};
use super::mapping::name;
use crate::proto::{EventKind, TelemetryEvent, WifiAccessPoint};
use crate::protocol::cursor::Cursor;

/// Cells a multi-cell packet carries (the serving cell and six neighbours).
const CELLS: usize = 7;

/// Multi-cell LBS: date-time, MCC, MNC, 7 × (LAC, CI, RSSI), timing advance, and for the
/// Wi-Fi-capable types a Wi-Fi count and access points, then the language (u16). The date
/// and MCC/MNC are required; the cells and access points are read as far as they go, since
/// models differ in how many they send. Cells whose LAC and cell id are both 0 are empty
/// slots and left out.
pub fn multi_cell(protocol: u8, content: &[u8]) -> Option<TelemetryEvent> {
    let cell = if matches!(protocol, 0xA1 | 0xA2) {
        Cell::Long
    } else {
        Cell::Standard
    };
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Lbs);
    block::set_time(&mut e, block::read_time(&mut c)?);
    let (mcc, mnc) = block::read_mcc_mnc(&mut c, cell)?;
    for _ in 0..CELLS {
        let Some((lac, cid)) = block::read_lac_cid(&mut c, cell) else {
            break;
        };
        let Some(rssi) = c.u8() else { break };
        if lac != 0 || cid != 0 {
            block::push_cell(&mut e, mcc, mnc, lac, cid, Some(rssi));
        }
    }
    if let Some(ta) = c.u8() {
        block::put(&mut e, name::TIMING_ADVANCE, ta);
    }
    if matches!(protocol, 0x18 | 0x2C | 0xA2) {
        if let Some(n) = c.u8() {
            read_wifi(&mut c, &mut e, n);
        }
    }
    if c.remaining() == 2 {
        if let Some(l) = c.u16() {
            block::put(&mut e, name::LANGUAGE, l);
        }
    }
    block::put_tail(&c, &mut e);
    Some(e)
}

/// `n` access points of MAC (6) + signal (1), as far as the content goes. The signal byte
/// is the magnitude of the dBm value (0x4B = -75 dBm).
fn read_wifi(c: &mut Cursor, e: &mut TelemetryEvent, n: u8) {
    for _ in 0..n {
        let (Some(mac), Some(rssi)) = (c.take(6), c.u8()) else {
            break;
        };
        e.wifi_access_points.push(WifiAccessPoint {
            mac: block::mac(mac),
            signal_dbm: Some(-i32::from(rssi)),
        });
    }
}

/// The CRC-less Wi-Fi form: BCD date-time, `count` access points, cell count, MCC, MNC,
/// cells × (LAC u16, CI u16, RSSI u8). Framing already checked the counts fit.
pub fn wifi_variant(content: &[u8], count: u8) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Lbs);
    block::set_time(&mut e, block::read_bcd_time(&mut c)?);
    read_wifi(&mut c, &mut e, count);
    let n = c.u8()?;
    let mcc = c.u16()?;
    let mnc = c.u8()?;
    for _ in 0..n {
        let lac = c.u16()?;
        let cid = c.u16()?;
        let rssi = c.u8()?;
        block::push_cell(&mut e, mcc, mnc.into(), lac.into(), cid.into(), Some(rssi));
    }
    block::put_tail(&c, &mut e);
    Some(e)
}
