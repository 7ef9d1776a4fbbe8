//! Teltonika over UDP: one datagram per input (the session must answer or refuse it whole,
//! within the cap), and the re-encoding checks on the header and the AVL data.
#![no_main]

#[path = "../../tests/props/mod.rs"]
mod props;

use avlgate::proto::Transport;
use avlgate::protocol::teltonika::MODULE;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: props::Counting = props::Counting;

fuzz_target!(|data: &[u8]| {
    props::drive_session(&MODULE, Transport::Udp, data, &[0]);
    props::check_teltonika_udp(data);
    props::check_avl(data);
});
