//! `ResumeRecord::decode` never panics. The input is tried as is (almost always a checksum
//! mismatch) and with a valid SHA-1 appended, so the bencode body behind the checksum is
//! fuzzed too; records that decode re-encode to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};
use uringseed::storage::resume::ResumeRecord;

fuzz_target!(|data: &[u8]| {
    let _ = ResumeRecord::decode(data);
    let mut signed = data.to_vec();
    let sum: [u8; 20] = Sha1::digest(data).into();
    signed.extend_from_slice(&sum);
    if let Ok(r) = ResumeRecord::decode(&signed) {
        let again = ResumeRecord::decode(&r.encode()).expect("an encoded record decodes");
        assert_eq!(again, r);
    }
});
