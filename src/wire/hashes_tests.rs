//! Tests of BEP 52 hash serving against trees built leaf by leaf.

use super::*;

/// Every layer of a file's padded tree, leaves first, from `blocks` made-up leaf hashes.
fn full_tree(blocks: usize, seed: u8) -> Vec<Vec<Hash>> {
    layers_over(
        (0..blocks)
            .map(|i| merkle::leaf(&[seed, (i % 251) as u8, (i / 251) as u8]))
            .collect(),
    )
}

/// The leaves padded with zero leaves to a power of two, then every layer above them (an
/// oracle of its own: the code under test builds its rows differently, from the piece layer).
fn layers_over(mut leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    leaves.resize(leaves.len().next_power_of_two(), [0; 32]);
    let mut layers = vec![leaves];
    while layers[layers.len() - 1].len() > 1 {
        let below = &layers[layers.len() - 1];
        let up = below
            .chunks(2)
            .map(|c| merkle::parent(&c[0], &c[1]))
            .collect();
        layers.push(up);
    }
    layers
}

/// The file's hashes as a torrent carries them: its root and its (unpadded) piece layer.
fn file(layers: &[Vec<Hash>], blocks: usize, piece_height: u32) -> FileHashes {
    let per_piece = 1usize << piece_height;
    let pieces = blocks.div_ceil(per_piece);
    let layer = if pieces > 1 {
        layers[piece_height as usize][..pieces].to_vec()
    } else {
        Vec::new()
    };
    FileHashes {
        root: layers[layers.len() - 1][0],
        layer,
        length: blocks as u64 * merkle::BLOCK,
    }
}

/// The reply's nodes for a request at or above the piece layer.
fn nodes(trees: &Trees, r: &HashRange) -> Result<Vec<u8>, HashReply> {
    match trees.plan(r)? {
        Plan::Nodes(n) => Ok(n),
        Plan::Read(job) => panic!("{r:?} needs a read: {job:?}"),
    }
}

fn range(root: Hash, base: u32, index: u32, length: u32, proof_layers: u32) -> HashRange {
    HashRange {
        root,
        base,
        index,
        length,
        proof_layers,
    }
}

/// Folds a reply back up: the run's subtree root, then each uncle; returns the node reached
/// and its layer.
fn fold(r: &HashRange, reply: &[u8]) -> (Hash, u32) {
    let hashes: Vec<Hash> = reply.chunks(32).map(|c| c.try_into().unwrap()).collect();
    let n = r.length as usize;
    let mut row = hashes[..n].to_vec();
    let mut layer = r.base;
    while row.len() > 1 {
        row = row
            .chunks(2)
            .map(|c| merkle::parent(&c[0], &c[1]))
            .collect();
        layer += 1;
    }
    let mut node = row[0];
    let mut at = r.index >> r.length.trailing_zeros();
    for uncle in &hashes[n..] {
        node = if at % 2 == 0 {
            merkle::parent(&node, uncle)
        } else {
            merkle::parent(uncle, &node)
        };
        at /= 2;
        layer += 1;
    }
    (node, layer)
}

#[test]
fn every_request_above_the_piece_layer_is_answered_from_the_full_tree_and_proves_the_root() {
    // 32 KiB pieces (two blocks each); files of 3 (two pieces), 13 and 64 blocks.
    let h = 1;
    for (blocks, seed) in [(3usize, 1u8), (13, 2), (64, 3)] {
        let layers = full_tree(blocks, seed);
        let f = file(&layers, blocks, h);
        let root = f.root;
        let trees = Trees::build(InfoHash([9; 20]), 32 << 10, [(0, &f)].into_iter());
        let top = (layers.len() - 1) as u32;
        let mut checked = 0;
        for base in h..top {
            let width = layers[base as usize].len() as u32;
            let mut length = 2;
            while length <= width.min(MAX_LENGTH) {
                for index in (0..width).step_by(length as usize) {
                    for proof in 0..top - base {
                        let r = range(root, base, index, length, proof);
                        let got = nodes(&trees, &r).expect("a valid request");
                        let run: Vec<u8> = layers[base as usize]
                            [index as usize..(index + length) as usize]
                            .concat();
                        assert_eq!(&got[..run.len()], &run[..], "{r:?}");
                        // The proof: one uncle per layer from the run's subtree root up to
                        // the requested depth.
                        let uncles = proof.saturating_sub(length.trailing_zeros() - 1);
                        assert_eq!(got.len(), run.len() + 32 * uncles as usize, "{r:?}");
                        let (node, layer) = fold(&r, &got);
                        let (want_layer, want_at) = (layer, index >> (layer - base));
                        assert_eq!(node, layers[want_layer as usize][want_at as usize], "{r:?}");
                        if proof == top - base - 1 {
                            assert_eq!((node, layer), (root, top), "{r:?}");
                        }
                        checked += 1;
                    }
                }
                length *= 2;
            }
        }
        assert!(checked > 0, "{blocks} blocks: nothing checked");
    }
}

#[test]
fn requests_outside_the_tree_are_refused_with_their_reason() {
    let h = 1;
    let layers = full_tree(13, 4);
    let f = file(&layers, 13, h);
    let root = f.root;
    // A file of one piece: it has a root but no piece layer.
    let small_layers = full_tree(2, 5);
    let small = file(&small_layers, 2, h);
    assert!(small.layer.is_empty());
    let small_root = small.root;
    let trees = Trees::build(
        InfoHash([9; 20]),
        32 << 10,
        [(0, &f), (1 << 20, &small)].into_iter(),
    );
    // 13 blocks: 16 leaves, root at layer 4, piece layer (layer 1) 8 wide.
    assert!(nodes(&trees, &range(root, 1, 0, 8, 2)).is_ok());
    for (r, why) in [
        (range([0; 32], 1, 0, 2, 0), HashReply::UnknownRoot),
        (range(small_root, 1, 0, 2, 0), HashReply::NoPieceLayer),
        (range(root, 1, 0, 1, 0), HashReply::BadRange),
        (range(root, 1, 0, 3, 0), HashReply::BadRange),
        (range(root, 1, 0, 1024, 0), HashReply::BadRange),
        (range(root, 1, 2, 4, 0), HashReply::BadRange),
        (range(root, 1, 8, 2, 0), HashReply::BadRange),
        (range(root, 1, u32::MAX - 1, 2, 0), HashReply::BadRange),
        (range(root, 1, 0, 16, 0), HashReply::BadRange),
        (range(root, 1, 0, 2, 3), HashReply::BadRange),
        (range(root, 1, 0, 2, u32::MAX), HashReply::BadRange),
        (range(root, 4, 0, 2, 0), HashReply::BadRange),
        (range(root, u32::MAX, 0, 2, 0), HashReply::BadRange),
    ] {
        assert_eq!(nodes(&trees, &r), Err(why), "{r:?}");
    }
}

/// One file of `blocks` made-up leaves in 32 KiB pieces: its root and its trees.
fn one_file(blocks: usize, seed: u8) -> (Hash, Trees) {
    let f = file(&full_tree(blocks, seed), blocks, 1);
    let trees = Trees::build(InfoHash([9; 20]), 32 << 10, [(0, &f)].into_iter());
    (f.root, trees)
}

#[test]
fn a_peer_gets_its_burst_then_its_rate_and_rejects_past_them() {
    let (root, trees) = one_file(13, 6);
    let r = range(root, 1, 0, 2, 0);
    let t0 = Instant::now();
    let mut server = HashServer::default();
    let mut out = Vec::new();
    let mut served = |at: Instant, n: u64| {
        (0..n)
            .filter(|_| {
                server.handle(Some(&trees), at, &r, 1 << 20, &mut out) == Some(HashReply::Served)
            })
            .count() as u64
    };
    assert_eq!(served(t0, BURST + 10), BURST);
    assert_eq!(
        served(t0 + std::time::Duration::from_secs(1), PER_SEC + 10),
        PER_SEC
    );
}

#[test]
fn replies_are_well_formed_messages_and_a_reply_too_big_for_the_room_is_a_reject() {
    let (root, trees) = one_file(64, 7);
    let r = range(root, 1, 0, 32, 4);
    let now = Instant::now();
    let mut server = HashServer::default();
    let mut out = Vec::new();
    assert_eq!(
        server.handle(Some(&trees), now, &r, 1 << 20, &mut out),
        Some(HashReply::Served)
    );
    match message::decode(&out, 1 << 20).unwrap() {
        message::Decoded::Message(Message::Hashes { range, hashes }, used) => {
            assert_eq!((range, used), (r, out.len()));
            assert_eq!(hashes, &nodes(&trees, &r).unwrap()[..]);
        }
        other => panic!("{other:?}"),
    }
    for (trees, room, why) in [
        (Some(&trees), 100, HashReply::Backlog),
        (None, 1 << 20, HashReply::UnknownRoot),
    ] {
        let mut out = Vec::new();
        assert_eq!(server.handle(trees, now, &r, room, &mut out), Some(why));
        assert_eq!(
            message::decode(&out, 1 << 20).unwrap(),
            message::Decoded::Message(Message::HashReject(r), out.len())
        );
    }
}

/// Every layer of the padded tree over `data`'s real 16 KiB leaves.
fn data_tree(data: &[u8]) -> Vec<Vec<Hash>> {
    layers_over(
        data.chunks(merkle::BLOCK as usize)
            .map(merkle::leaf)
            .collect(),
    )
}

#[test]
fn block_hashes_are_computed_from_the_data_checked_against_the_piece_layer_and_prove_the_root() {
    // 64 KiB pieces (4 blocks: the piece layer is layer 2); 21 blocks, the last 1,000 bytes.
    let h = 2;
    let len = 20 * merkle::BLOCK as usize + 1000;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let layers = data_tree(&data);
    let pieces = len.div_ceil(64 << 10);
    let f = FileHashes {
        root: layers[layers.len() - 1][0],
        layer: layers[h as usize][..pieces].to_vec(),
        length: len as u64,
    };
    let root = f.root;
    // The file starts 3 pieces into the torrent's stream.
    let offset = 3 * (64u64 << 10);
    let trees = Trees::build(InfoHash([9; 20]), 64 << 10, [(offset, &f)].into_iter());
    let top = (layers.len() - 1) as u32;
    let mut read = 0;
    for base in 0..h {
        let width = layers[base as usize].len() as u32;
        let mut length = 2;
        while length <= width.min(MAX_LENGTH) {
            for index in (0..width).step_by(length as usize) {
                for proof in 0..top - base {
                    let r = range(root, base, index, length, proof);
                    let got = match trees.plan(&r).unwrap() {
                        Plan::Read(job) => {
                            read += 1;
                            let at = (job.start - offset) as usize;
                            assert!(job.len > 0 && job.len <= MAX_READ as usize, "{job:?}");
                            trees.finish(&job, &data[at..at + job.len]).unwrap()
                        }
                        // Past the file's last block: pads only.
                        Plan::Nodes(n) => n,
                    };
                    let run: Vec<u8> =
                        layers[base as usize][index as usize..(index + length) as usize].concat();
                    assert_eq!(&got[..run.len()], &run[..], "{r:?}");
                    let (node, layer) = fold(&r, &got);
                    let at = index >> (layer - base);
                    assert_eq!(node, layers[layer as usize][at as usize], "{r:?}");
                    if proof == top - base - 1 {
                        assert_eq!((node, layer), (root, top), "{r:?}");
                    }
                }
            }
            length *= 2;
        }
    }
    assert!(read > 0);
    // Data that no longer matches its piece layer, or a short read, is refused.
    let r = range(root, 0, 4, 4, 3);
    let Plan::Read(job) = trees.plan(&r).unwrap() else {
        panic!("block hashes without a read")
    };
    let at = (job.start - offset) as usize;
    let mut bad = data[at..at + job.len].to_vec();
    bad[100] ^= 1;
    assert_eq!(trees.finish(&job, &bad), Err(HashReply::Unavailable));
    assert_eq!(trees.finish(&job, &bad[1..]), Err(HashReply::Unavailable));
    // A peer waits for one read at a time, and gets READ_BURST of them at once.
    let mut server = HashServer::default();
    let now = Instant::now();
    let mut out = Vec::new();
    assert_eq!(
        server.handle(Some(&trees), now, &r, 1 << 20, &mut out),
        None
    );
    assert_eq!(
        server.handle(Some(&trees), now, &r, 1 << 20, &mut out),
        Some(HashReply::Rate)
    );
    let job = server.take_job().expect("the read it waits for");
    let mut served = HashServer::finish(
        Some(&trees),
        &job,
        Some(&data[at..at + job.len]),
        1 << 20,
        &mut out,
    );
    assert_eq!(served, HashReply::Served);
    for _ in 1..READ_BURST {
        assert_eq!(
            server.handle(Some(&trees), now, &r, 1 << 20, &mut out),
            None
        );
        let job = server.take_job().unwrap();
        served = HashServer::finish(Some(&trees), &job, None, 1 << 20, &mut out);
        assert_eq!(served, HashReply::Unavailable);
    }
    assert_eq!(
        server.handle(Some(&trees), now, &r, 1 << 20, &mut out),
        Some(HashReply::Rate)
    );
}
