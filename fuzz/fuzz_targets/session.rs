//! Every registered protocol's session, over every transport it has: the progress, bounded
//! buffering, bounded allocation and event-encoding properties of `tests/props`. Input: one
//! byte choosing the protocol and transport, one byte of chunking, then the stream. A
//! protocol added to the registry is fuzzed here without a target of its own.
#![no_main]

#[path = "../../tests/props/mod.rs"]
mod props;

use avlgate::proto::Transport;
use avlgate::protocol::REGISTRY;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: props::Counting = props::Counting;

fuzz_target!(|data: &[u8]| {
    let [pick, chunking, stream @ ..] = data else {
        return;
    };
    let pairs: Vec<_> = REGISTRY
        .iter()
        .flat_map(|m| m.transports().iter().map(move |t| (*m, *t)))
        .collect();
    let (module, transport) = pairs[usize::from(*pick) % pairs.len()];
    let chunks = if transport == Transport::Udp || *chunking < 64 {
        vec![0]
    } else {
        props::chunk_sizes(&[*chunking, chunking.rotate_left(3)])
    };
    props::drive_session(module, transport, stream, &chunks);
    props::check_detect(stream, transport);
});
