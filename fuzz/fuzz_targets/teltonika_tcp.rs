//! Teltonika over TCP: the session fed in chunks (progress, bounded buffer and heap, events
//! encode), and the frame after the login through the re-encoding checks (envelope byte for
//! byte, AVL records, Codec 12/14). Input: one byte of chunking, then the stream.
#![no_main]

#[path = "../../tests/props/mod.rs"]
mod props;

use avlgate::proto::Transport;
use avlgate::protocol::teltonika::MODULE;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: props::Counting = props::Counting;

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, stream)) = data.split_first() else {
        return;
    };
    let chunks = props::chunk_sizes(&[chunking, chunking.rotate_left(3)]);
    let chunks = if chunking < 64 { vec![0] } else { chunks };
    props::drive_session(&MODULE, Transport::Tcp, stream, &chunks);
    // The seeds start with a 17-byte login; also check the bytes as a bare frame.
    props::check_teltonika_tcp_frame(stream);
    props::check_teltonika_tcp_frame(stream.get(17..).unwrap_or_default());
});
