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

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = krpc::decode(data) {
        let again = krpc::encode(&m);
        assert_eq!(krpc::decode(&again).as_ref(), Ok(&m));
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
