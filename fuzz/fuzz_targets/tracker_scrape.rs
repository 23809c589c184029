//! `tracker::scrape::parse_reply` (HTTP, BEP 48) and `tracker::udp::parse_scrape` (BEP 15)
//! never panic, and keep only what was asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::metainfo::InfoHash;
use uringseed::tracker::{scrape, udp};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, p)) = data.split_first() else {
        return;
    };
    if flags & 1 == 0 {
        // HTTP: the torrents asked about are fixed ones a fuzzer can write as keys (all zeros,
        // all 'A', all 0xff: raw, or 0xff as UTF-8 text the way bittorrent-tracker sends it).
        let asked = [
            InfoHash([0; 20]),
            InfoHash([b'A'; 20]),
            InfoHash([0xff; 20]),
        ];
        let n = usize::from(flags >> 1) % 4;
        if let Ok(r) = scrape::parse_reply(p, &asked[..n]) {
            assert!(r.files.len() <= n);
            assert!(r.files.len() + r.skipped <= scrape::MAX_REPLY_ENTRIES);
            for (i, (ih, counts)) in r.files.iter().enumerate() {
                assert!(asked[..n].contains(ih));
                assert!(r.files[..i].iter().all(|(other, _)| other != ih), "twice");
                assert_ne!(*counts, scrape::ScrapeCounts::default());
            }
        }
    } else {
        // UDP: as many torrents asked about as the second byte says (0-255); the transaction
        // id is the packet's own, so the body is reached.
        let Some((&asked, p)) = p.split_first() else {
            return;
        };
        let tid = p
            .get(4..8)
            .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()));
        if let Ok(Some(counts)) = udp::parse_scrape(p, tid, usize::from(asked)) {
            assert_eq!(counts.len(), usize::from(asked).min((p.len() - 8) / 12));
        }
    }
});
