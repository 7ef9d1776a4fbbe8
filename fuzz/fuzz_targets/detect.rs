//! Protocol detection over every prefix of the input, TCP and UDP: bounded, never flipping
//! from one protocol to another as more bytes arrive.
#![no_main]

#[path = "../../tests/props/mod.rs"]
mod props;

use avlgate::proto::Transport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    props::check_detect(data, Transport::Tcp);
    props::check_detect(data, Transport::Udp);
});
