//! Wialon IPS over TCP (chunked) and UDP (one datagram), and the record re-encoding check.
//! Input: one byte of chunking, then the stream.
#![no_main]

#[path = "../../tests/props/mod.rs"]
mod props;

use avlgate::proto::Transport;
use avlgate::protocol::wialon::MODULE;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: props::Counting = props::Counting;

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, stream)) = data.split_first() else {
        return;
    };
    let chunks = if chunking < 64 {
        vec![0]
    } else {
        props::chunk_sizes(&[chunking, chunking.rotate_left(3)])
    };
    props::drive_session(&MODULE, Transport::Tcp, stream, &chunks);
    props::drive_session(&MODULE, Transport::Udp, stream, &[0]);
    props::check_wialon_records(stream);
});
