//! The KRPC decoder and the DHT node never panic, and what they produce keeps its bounds: a
//! decoded message re-encodes to one that decodes to the same message; the input, as one
//! packet and then as a sequence of packets (`[from, len_hi, len_lo, bytes...]`, the clock
//! advancing when `from`'s top bit is set), goes into one `Node` that has bootstrapped and
//! started an announcing lookup. Every packet the node sends decodes with our own decoder,
//! every reply is at most `MAX_REPLY` bytes, and the table stays within 160 × 8 nodes. In a
//! packet, the bytes `EE EE` are replaced with the transaction id the node last sent to that
//! address, so seeds can hold responses that match.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use uringseed::dht::krpc::{self, Body};
use uringseed::dht::node::MAX_REPLY;
use uringseed::dht::{Node, NodeConfig, NodeId};

fn addr(sel: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, (sel & 7) + 1], 6881))
}

fn drain(node: &mut Node, tids: &mut HashMap<SocketAddr, Vec<u8>>) {
    while let Some(t) = node.poll_transmit() {
        let m = krpc::decode(&t.bytes).expect("our own output decodes");
        match m.body {
            Body::Query { .. } => {
                tids.insert(t.to, m.tid);
            }
            _ => assert!(
                t.bytes.len() <= MAX_REPLY,
                "reply of {} bytes",
                t.bytes.len()
            ),
        }
    }
    while node.poll_event().is_some() {}
    assert!(node.table_len() <= 160 * 8);
}

fn patch(pkt: &mut [u8], tid: Option<&Vec<u8>>) {
    let Some(tid) = tid.filter(|t| t.len() == 2) else {
        return;
    };
    let mut i = 0;
    while i + 1 < pkt.len() {
        if pkt[i] == 0xee && pkt[i + 1] == 0xee {
            pkt[i..i + 2].copy_from_slice(tid);
            i += 2;
        } else {
            i += 1;
        }
    }
}

/// Whether a message holds an IPv4-mapped IPv6 compact address (`ip`, `values`, `nodes6`):
/// decoded as IPv6 but encoded as a 6-byte IPv4 address, so the round trip changes `ip` and
/// `values` and breaks `nodes6`'s 38-byte records (2026-12-03 findings,
/// fuzz/findings/krpc-nodes6-mapped and krpc-values-mapped). FUZZ_KNOWN_MAPPED_ADDR=1 skips the
/// round trip of such messages, so a campaign can go on past them until they are fixed.
fn known_mapped(m: &krpc::Message) -> bool {
    static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let known = *KNOWN.get_or_init(|| std::env::var_os("FUZZ_KNOWN_MAPPED_ADDR").is_some());
    let mapped = |a: &SocketAddr| matches!(a, SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some());
    known
        && (m.ip.as_ref().is_some_and(mapped)
            || matches!(&m.body, Body::Response(r)
                if r.values.iter().any(mapped) || r.nodes6.iter().any(|(_, a)| mapped(a))))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = krpc::decode(data) {
        let again = krpc::encode(&m);
        if !known_mapped(&m) {
            assert_eq!(krpc::decode(&again).as_ref(), Ok(&m));
        }
    }
    let t0 = Instant::now();
    let mut now = t0;
    let mut node = Node::new(NodeId([0x11; 20]), NodeConfig::default(), 1, t0);
    let mut tids = HashMap::new();
    node.bootstrap(&[addr(0), addr(1)], t0);
    node.get_peers([0x22; 20], Some(6881), t0);
    drain(&mut node, &mut tids);
    node.handle_packet(now, addr(2), data);
    drain(&mut node, &mut tids);
    let mut rest = data;
    while rest.len() >= 3 {
        let sel = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]) & 0x7ff);
        let end = (3 + len).min(rest.len());
        let mut pkt = rest[3..end].to_vec();
        rest = &rest[end..];
        let from = addr(sel);
        patch(&mut pkt, tids.get(&from));
        if sel & 0x80 != 0 {
            now += Duration::from_millis(u64::from(sel & 0x78) * 100);
            node.handle_timeout(now);
        }
        node.handle_packet(now, from, &pkt);
        drain(&mut node, &mut tids);
    }
    now += Duration::from_secs(3);
    node.handle_timeout(now);
    drain(&mut node, &mut tids);
});
