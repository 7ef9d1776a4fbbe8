//! GT06 over TCP (chunked) and UDP, and framing: splits within the input and the cap, skips
//! that make progress, accepted frames re-encoding byte for byte. Input: one byte of
//! chunking, then the stream.
#![no_main]

#[path = "../../tests/props/mod.rs"]
mod props;

use avlgate::proto::Transport;
use avlgate::protocol::gt06::MODULE;
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
    props::check_gt06_frames(stream);
});
