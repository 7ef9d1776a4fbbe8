//! Cell-tower and Wi-Fi packets: the multi-cell LBS family (`0x18`, `0x28`, `0x2E`, `0x24`,
//! `0x2C`, `0xA1`, `0xA2`) and the Wi-Fi packets (`0x17`, `0x69`), both the CRC-checked
//! form and the CRC-less form whose byte 2 is the Wi-Fi count.
//!
//! All become kind LBS events: the serving cell as `mcc`/`mnc`/`lac`/`cell_id`, every cell
//! as `cells` (`lac/cell_id/rssi` joined by `;`) and the access points as `wifi`
//! (`mac/rssi` joined by `;`) with `wifi_count`.

use super::block::{self, Cell};
use crate::event::attr;
use crate::proto::{EventKind, TelemetryEvent};
use crate::protocol::cursor::Cursor;

/// Cells a multi-cell packet carries (the serving cell and six neighbours).
const CELLS: usize = 7;

/// Multi-cell LBS: date-time, MCC, MNC, 7 × (LAC, CI, RSSI), timing advance, and for the
/// Wi-Fi-capable types a Wi-Fi count and access points. The date and MCC/MNC are required;
/// the cells and access points are read as far as they go, since models differ in how many
/// they send.
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
    let mut cells = Vec::new();
    for _ in 0..CELLS {
        let Some((lac, cid)) = block::read_lac_cid(&mut c, cell) else {
            break;
        };
        let Some(rssi) = c.u8() else { break };
        if cells.is_empty() {
            block::set_cell(&mut e, mcc, mnc, lac, cid);
        }
        if lac != 0 || cid != 0 {
            cells.push(format!("{lac}/{cid}/{rssi}"));
        }
    }
    if !cells.is_empty() {
        e.set("cells", attr::string(cells.join(";")));
    }
    if let Some(ta) = c.u8() {
        e.set("timing_advance", attr::uint(ta.into()));
    }
    if matches!(protocol, 0x18 | 0x2C | 0xA2) {
        if let Some(n) = c.u8() {
            read_wifi(&mut c, &mut e, n);
        }
    }
    Some(e)
}

/// `n` access points of MAC (6) + RSSI (1), as far as the content goes.
fn read_wifi(c: &mut Cursor, e: &mut TelemetryEvent, n: u8) {
    let mut aps = Vec::new();
    for _ in 0..n {
        let (Some(mac), Some(rssi)) = (c.take(6), c.u8()) else {
            break;
        };
        aps.push(format!("{}/{rssi}", block::mac(mac)));
    }
    e.set("wifi_count", attr::uint(aps.len() as u64));
    if !aps.is_empty() {
        e.set("wifi", attr::string(aps.join(";")));
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
    let mut cells = Vec::new();
    for i in 0..n {
        let lac = c.u16()?;
        let cid = c.u16()?;
        let rssi = c.u8()?;
        if i == 0 {
            block::set_cell(&mut e, mcc, mnc.into(), lac.into(), cid.into());
        }
        cells.push(format!("{lac}/{cid}/{rssi}"));
    }
    if !cells.is_empty() {
        e.set("cells", attr::string(cells.join(";")));
    }
    Some(e)
}

/// A `0x17`/`0x69` that came with a length and a good CRC. Models disagree on its layout
/// (some put a GPS block there), so it is published as LBS with its raw content and the
/// date-time when the first six bytes are one.
pub fn wifi_checked(protocol: u8, content: &[u8]) -> TelemetryEvent {
    let mut e = block::event(EventKind::Lbs);
    let mut c = Cursor::new(content);
    if let Some(t) = block::read_time(&mut c) {
        block::set_time(&mut e, t);
    }
    e.set("protocol_number", attr::uint(protocol.into()));
    e.set("raw", attr::bytes(content.to_vec()));
    e
}
