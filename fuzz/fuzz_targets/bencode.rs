//! `bencode::decode` and `decode_prefix` never panic; spans are consistent with the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::bencode::{self, Node, Value};

/// Every child's span lies inside its parent's, children are in order, re-decoding a child's
/// bytes gives the same value, and no dictionary holds a key twice.
fn check(node: &Node<'_>, data: &[u8], depth: usize) {
    assert!(
        node.span.start < node.span.end,
        "empty span {:?}",
        node.span
    );
    assert!(node.span.end <= data.len());
    let children: Vec<&Node<'_>> = match &node.value {
        Value::List(items) => items.iter().collect(),
        Value::Dict(entries) => entries.iter().map(|(_, v)| v).collect(),
        Value::Int(_) | Value::Bytes(_) => Vec::new(),
    };
    if let Value::Dict(entries) = &node.value {
        let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        assert!(
            keys.windows(2).all(|w| w[0] != w[1]),
            "duplicate key accepted"
        );
    }
    let mut at = node.span.start;
    for c in children {
        assert!(
            c.span.start > at && c.span.end < node.span.end,
            "child span {:?} outside {:?}",
            c.span,
            node.span
        );
        at = c.span.end - 1;
        if depth < 4 {
            let again = bencode::decode(&data[c.span.clone()]).expect("child re-decodes");
            assert_eq!(again.kind(), c.kind());
            assert_eq!(again.span, 0..c.span.len());
            if matches!(c.value, Value::Int(_) | Value::Bytes(_)) {
                assert_eq!(again.value, c.value);
            }
        }
        check(c, data, depth + 1);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = bencode::decode(data) {
        assert_eq!(
            root.span,
            0..data.len(),
            "root span must cover the whole input"
        );
        check(&root, data, 0);
        let _ = bencode::is_canonical(&root);
    }
    if let Ok((node, used)) = bencode::decode_prefix(data) {
        assert!(used > 0 && used <= data.len());
        assert_eq!(node.span, 0..used);
        // The prefix alone decodes exactly to the same value.
        let whole = bencode::decode(&data[..used]).expect("a decoded prefix decodes alone");
        assert_eq!(whole, node);
    }
});
