//! The BEP 10 extension protocol, sans I/O: our extension handshake (`m` with the extensions
//! we speak — `ut_metadata` and `ut_pex` for public torrents, none for private ones, as
//! libtorrent does — `metadata_size`, `p`, `reqq`, `v`, `yourip`), the peer's handshake read
//! and bounded, and the dispatch of extended messages by the ids each side chose: metadata
//! requests answered from the exact info-dictionary bytes ([`super::metadata`], only while
//! less than [`METADATA_BACKLOG`] bytes wait unsent, the rest rejected), peer exchange
//! received and scheduled ([`super::pex`]). An unknown id is ignored; a malformed message, or
//! an extended message before the handshake, is an error the state machine drops the peer for.
//! Time is passed in; this module sees no socket and no other connection.

use super::metadata::{self, MetadataMessage};
use super::pex::{self, PexPeer, PexSender};
use crate::bencode::{self, Value};
use crate::reasons::DropReason;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The id we want `ut_metadata` messages under.
pub const OUR_UT_METADATA: u8 = 1;
/// The id we want `ut_pex` messages under.
pub const OUR_UT_PEX: u8 = 2;
/// Metadata pieces are answered only while less than this many bytes of output wait unsent;
/// requests beyond are rejected (a few bytes each), so a flood is never buffered.
pub const METADATA_BACKLOG: usize = 256 << 10;
/// Seconds between two received PEX messages that are acted on (the rest are ignored).
pub const PEX_ACCEPT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// What our extension handshake says.
#[derive(Debug, Clone, Default)]
pub struct Ours<'a> {
    /// The info dictionary's size, when we serve it (public torrents).
    pub metadata_size: Option<usize>,
    pub pex: bool,
    /// Our listen port (0: not sent).
    pub port: u16,
    pub reqq: usize,
    pub version: &'a str,
    /// The peer's address as we see it.
    pub yourip: Option<IpAddr>,
}

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Our extension handshake's payload (keys in canonical order).
pub fn encode_handshake(o: &Ours<'_>) -> Vec<u8> {
    let mut out = b"d1:md".to_vec();
    if o.metadata_size.is_some() {
        out.extend_from_slice(format!("11:ut_metadatai{OUR_UT_METADATA}e").as_bytes());
    }
    if o.pex {
        out.extend_from_slice(format!("6:ut_pexi{OUR_UT_PEX}e").as_bytes());
    }
    out.push(b'e');
    if let Some(size) = o.metadata_size {
        out.extend_from_slice(format!("13:metadata_sizei{size}e").as_bytes());
    }
    if o.port != 0 {
        out.extend_from_slice(format!("1:pi{}e", o.port).as_bytes());
    }
    out.extend_from_slice(format!("4:reqqi{}e", o.reqq).as_bytes());
    bstr(&mut out, b"v");
    bstr(&mut out, o.version.as_bytes());
    if let Some(ip) = o.yourip {
        bstr(&mut out, b"yourip");
        match ip.to_canonical() {
            IpAddr::V4(v4) => bstr(&mut out, &v4.octets()),
            IpAddr::V6(v6) => bstr(&mut out, &v6.octets()),
        }
    }
    out.push(b'e');
    out
}

/// What the peer's extension handshake told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Theirs {
    /// The ids the peer wants messages under (None: it does not speak it, or disabled it).
    pub ut_metadata: Option<u8>,
    pub ut_pex: Option<u8>,
    /// Its listen port.
    pub port: Option<u16>,
}

/// Reads a peer's extension handshake (the message cap bounds its size, the decoder its
/// depth). Unknown keys and extensions are ignored.
pub fn decode_handshake(payload: &[u8]) -> Result<Theirs, DropReason> {
    let node = bencode::decode(payload).map_err(|_| DropReason::MalformedExtension)?;
    if !matches!(node.value, Value::Dict(_)) {
        return Err(DropReason::MalformedExtension);
    }
    let mut t = Theirs::default();
    match node.get("m").map(|m| &m.value) {
        None => {}
        Some(Value::Dict(entries)) => {
            for (name, id) in entries {
                let id = match id.value {
                    Value::Int(0) => None,
                    Value::Int(v) => {
                        Some(u8::try_from(v).map_err(|_| DropReason::MalformedExtension)?)
                    }
                    _ => return Err(DropReason::MalformedExtension),
                };
                match *name {
                    b"ut_metadata" => t.ut_metadata = id,
                    b"ut_pex" => t.ut_pex = id,
                    _ => {}
                }
            }
        }
        Some(_) => return Err(DropReason::MalformedExtension),
    }
    if let Some(Value::Int(p)) = node.get("p").map(|n| &n.value) {
        t.port = u16::try_from(*p).ok().filter(|&p| p != 0);
    }
    Ok(t)
}

/// What an extended message asks of the rest of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtEvent {
    /// The peer's extension handshake arrived (its listen port, if it gave one).
    Handshake {
        port: Option<u16>,
    },
    /// Peers it told us about (PEX), for the peer-address intake.
    Peers(Vec<SocketAddr>),
    MetadataServed,
    MetadataRejected,
}

/// One connection's extension state.
#[derive(Debug)]
pub struct Extensions {
    /// The info dictionary, when served (public torrents).
    metadata: Option<bytes::Bytes>,
    /// PEX allowed for this torrent (public).
    pex_allowed: bool,
    theirs: Option<Theirs>,
    pex_sender: Option<PexSender>,
    pex_received: Option<Instant>,
}

impl Extensions {
    pub fn new(metadata: Option<bytes::Bytes>, pex_allowed: bool) -> Extensions {
        Extensions {
            metadata,
            pex_allowed,
            theirs: None,
            pex_sender: None,
            pex_received: None,
        }
    }

    /// Our handshake's contents for this torrent.
    pub fn ours<'a>(
        &self,
        port: u16,
        reqq: usize,
        version: &'a str,
        yourip: Option<IpAddr>,
    ) -> Ours<'a> {
        Ours {
            metadata_size: self.metadata.as_ref().map(|m| m.len()),
            pex: self.pex_allowed,
            port,
            reqq,
            version,
            yourip,
        }
    }

    /// Handles extended message `id` (our numbering); appends replies (as (their id,
    /// payload)) to `replies`, events to `events`. `unsent` is the output already waiting.
    pub fn handle(
        &mut self,
        now: Instant,
        id: u8,
        payload: &[u8],
        unsent: usize,
        replies: &mut Vec<(u8, Vec<u8>)>,
        events: &mut Vec<ExtEvent>,
    ) -> Result<(), DropReason> {
        if id == 0 {
            let t = decode_handshake(payload)?;
            events.push(ExtEvent::Handshake { port: t.port });
            if self.pex_allowed && t.ut_pex.is_some() && self.pex_sender.is_none() {
                self.pex_sender = Some(PexSender::new(now));
            }
            self.theirs = Some(t);
            return Ok(());
        }
        let Some(theirs) = &self.theirs else {
            return Err(DropReason::ExtensionBeforeHandshake);
        };
        match id {
            OUR_UT_METADATA if self.metadata.is_some() => {
                let msg = metadata::decode(payload).map_err(|_| DropReason::MalformedExtension)?;
                let MetadataMessage::Request(piece) = msg else {
                    // Data or rejects from a peer: we never ask, so there is nothing to take.
                    return Ok(());
                };
                let Some(reply_id) = theirs.ut_metadata else {
                    return Ok(());
                };
                let meta = self.metadata.as_ref().expect("checked above");
                let waiting = unsent + replies.iter().map(|(_, r)| r.len() + 6).sum::<usize>();
                let reply = match metadata::piece(meta, piece) {
                    Some(bytes) if waiting + bytes.len() < METADATA_BACKLOG => {
                        events.push(ExtEvent::MetadataServed);
                        metadata::encode_data(piece, meta.len(), bytes)
                    }
                    _ => {
                        events.push(ExtEvent::MetadataRejected);
                        metadata::encode_reject(piece)
                    }
                };
                replies.push((reply_id, reply));
            }
            OUR_UT_PEX if self.pex_allowed => {
                let peers = pex::decode(payload).map_err(|_| DropReason::MalformedExtension)?;
                let fresh = self
                    .pex_received
                    .is_none_or(|t| now.saturating_duration_since(t) >= PEX_ACCEPT_EVERY);
                if fresh {
                    self.pex_received = Some(now);
                    events.push(ExtEvent::Peers(peers.into_iter().map(|p| p.addr).collect()));
                }
            }
            // An id we did not hand out (or an extension off for this torrent): ignored.
            _ => {}
        }
        Ok(())
    }

    /// When a PEX message to this peer may next be due (None: no PEX with it).
    pub fn pex_next(&self) -> Option<Instant> {
        self.pex_sender.as_ref().map(PexSender::next)
    }

    /// A PEX message (their id, payload) if one is due at `now`; `current` is the torrent's
    /// shareable peers other than this one.
    pub fn poll_pex(&mut self, now: Instant, current: &[PexPeer]) -> Option<(u8, Vec<u8>)> {
        let id = self.theirs.as_ref()?.ut_pex?;
        let msg = self.pex_sender.as_mut()?.poll(now, current)?;
        Some((id, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_handshake_is_canonical_and_says_what_we_speak() {
        let o = Ours {
            metadata_size: Some(12_345),
            pex: true,
            port: 6881,
            reqq: 500,
            version: "uringseed 0.1.0",
            yourip: Some("10.1.2.3".parse().unwrap()),
        };
        let enc = encode_handshake(&o);
        let node = bencode::decode(&enc).unwrap();
        assert!(bencode::is_canonical(&node));
        let t = decode_handshake(&enc).unwrap();
        assert_eq!(
            t,
            Theirs {
                ut_metadata: Some(OUR_UT_METADATA),
                ut_pex: Some(OUR_UT_PEX),
                port: Some(6881)
            }
        );
        assert!(matches!(node.get("yourip").unwrap().value, Value::Bytes(b) if b == [10, 1, 2, 3]));
        // A private torrent: no extensions, no metadata size.
        let private = encode_handshake(&Ours {
            reqq: 500,
            version: "v",
            ..Ours::default()
        });
        let node = bencode::decode(&private).unwrap();
        assert_eq!(node.get("m").unwrap().value, Value::Dict(vec![]));
        assert!(node.get("metadata_size").is_none());
    }

    #[test]
    fn bad_handshakes_and_messages_before_one_are_refused() {
        for bad in [
            &b"i1e"[..],
            b"d1:mi1ee",
            b"d1:md6:ut_pexi300eee",
            b"d1:md6:ut_pex3:abcee",
            b"not bencode",
        ] {
            assert_eq!(decode_handshake(bad), Err(DropReason::MalformedExtension));
        }
        let deep = format!("d1:m{}{}e", "d1:a".repeat(1000), "e".repeat(1000));
        assert_eq!(
            decode_handshake(deep.as_bytes()),
            Err(DropReason::MalformedExtension)
        );
        let mut x = Extensions::new(Some(bytes::Bytes::from(vec![1u8; 100])), true);
        let (mut r, mut e) = (Vec::new(), Vec::new());
        let t0 = Instant::now();
        assert_eq!(
            x.handle(
                t0,
                OUR_UT_METADATA,
                &metadata::encode_request(0),
                0,
                &mut r,
                &mut e
            ),
            Err(DropReason::ExtensionBeforeHandshake)
        );
        assert!(x
            .handle(t0, 0, b"d1:md11:ut_metadatai3eee", 0, &mut r, &mut e)
            .is_ok());
        // Unknown ids are ignored.
        assert!(x.handle(t0, 77, b"whatever", 0, &mut r, &mut e).is_ok());
        assert!(r.is_empty());
    }

    #[test]
    fn metadata_is_served_piece_by_piece_and_floods_are_rejected() {
        let meta: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut x = Extensions::new(Some(bytes::Bytes::from(meta.clone())), false);
        let (mut r, mut e) = (Vec::new(), Vec::new());
        let t0 = Instant::now();
        x.handle(t0, 0, b"d1:md11:ut_metadatai3eee", 0, &mut r, &mut e)
            .unwrap();
        for piece in 0..3 {
            x.handle(
                t0,
                OUR_UT_METADATA,
                &metadata::encode_request(piece),
                0,
                &mut r,
                &mut e,
            )
            .unwrap();
        }
        x.handle(
            t0,
            OUR_UT_METADATA,
            &metadata::encode_request(3),
            0,
            &mut r,
            &mut e,
        )
        .unwrap();
        let mut got = Vec::new();
        for (id, payload) in &r[..3] {
            assert_eq!(*id, 3, "their id");
            match metadata::decode(payload).unwrap() {
                MetadataMessage::Data {
                    total_size, bytes, ..
                } => {
                    assert_eq!(total_size, 40_000);
                    got.extend_from_slice(bytes);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, meta, "the exact bytes");
        assert_eq!(
            metadata::decode(&r[3].1),
            Ok(MetadataMessage::Reject(3)),
            "past the end"
        );
        // 10,000 requests before the writer takes anything: served up to the backlog bound,
        // the rest rejected.
        r.clear();
        e.clear();
        for _ in 0..10_000 {
            x.handle(
                t0,
                OUR_UT_METADATA,
                &metadata::encode_request(0),
                0,
                &mut r,
                &mut e,
            )
            .unwrap();
        }
        let served = e.iter().filter(|v| **v == ExtEvent::MetadataServed).count();
        assert_eq!(served, METADATA_BACKLOG / (16_384 + 46));
        let bytes: usize = r.iter().map(|(_, p)| p.len()).sum();
        assert!(bytes < METADATA_BACKLOG + 10_000 * 40, "{bytes}");
        // Output already waiting counts too.
        let (mut r2, mut e2) = (Vec::new(), Vec::new());
        let req = metadata::encode_request(0);
        x.handle(
            t0,
            OUR_UT_METADATA,
            &req,
            METADATA_BACKLOG,
            &mut r2,
            &mut e2,
        )
        .unwrap();
        assert_eq!(e2, vec![ExtEvent::MetadataRejected]);
    }

    #[test]
    fn pex_is_received_at_most_twice_a_minute_and_sent_on_schedule() {
        let mut x = Extensions::new(None, true);
        let (mut r, mut e) = (Vec::new(), Vec::new());
        let t0 = Instant::now();
        x.handle(t0, 0, b"d1:md6:ut_pexi9ee1:pi7000ee", 0, &mut r, &mut e)
            .unwrap();
        assert_eq!(e, vec![ExtEvent::Handshake { port: Some(7000) }]);
        let msg = pex::encode(
            &[PexPeer {
                addr: "10.0.0.1:1".parse().unwrap(),
                flags: 0,
            }],
            &[],
        );
        x.handle(t0, OUR_UT_PEX, &msg, 0, &mut r, &mut e).unwrap();
        x.handle(t0, OUR_UT_PEX, &msg, 0, &mut r, &mut e).unwrap();
        let peers = e.iter().filter(|v| matches!(v, ExtEvent::Peers(_))).count();
        assert_eq!(peers, 1, "the second, too soon, is ignored");
        assert_eq!(x.pex_next(), Some(t0 + pex::FIRST_AFTER));
        let others = [PexPeer {
            addr: "10.0.0.9:6881".parse().unwrap(),
            flags: pex::FLAG_REACHABLE,
        }];
        assert!(x.poll_pex(t0, &others).is_none());
        let (id, payload) = x.poll_pex(t0 + pex::FIRST_AFTER, &others).unwrap();
        assert_eq!((id, pex::decode(&payload).unwrap()), (9, others.to_vec()));
        // No PEX for a private torrent, whatever the peer says.
        let mut p = Extensions::new(None, false);
        p.handle(t0, 0, b"d1:md6:ut_pexi9eee", 0, &mut r, &mut e)
            .unwrap();
        assert_eq!(p.pex_next(), None);
        e.clear();
        p.handle(t0, OUR_UT_PEX, &msg, 0, &mut r, &mut e).unwrap();
        assert!(e.is_empty());
    }
}
