//! What the API shows of torrents and peers, as serde structs built from the table, the
//! control catalog and the tracker status (the native API serialises them as they are; the
//! qBittorrent-compatible routes map them to that API's field names).

use crate::control::{Control, Entry};
use crate::metainfo::InfoHash;
use crate::state::{PeerHandle, TorrentState};
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Bytes per second (0 = none of its own).
    pub upload_rate_limit: u64,
    /// Bytes per quota period (0 = none of its own).
    pub upload_quota: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tracker {
    /// Secrets (passkeys, tokens) redacted.
    pub url: String,
    /// "working", "error" or "not contacted".
    pub status: &'static str,
    pub last_error: Option<String>,
    pub announces: u64,
    pub failures: u64,
    /// Seconds since the Unix epoch of the last announce reply or failure.
    pub last_announce: Option<i64>,
    pub next_announce_in_secs: Option<u64>,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub completed: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Torrent {
    /// The hash it is known by: v1 (a hybrid's too), or a v2 torrent's truncated v2 one.
    pub info_hash: String,
    /// "v1", "v2" or "hybrid" (BEP 52).
    pub hash_kind: &'static str,
    /// The full 64-digit v2 info-hash (v2 and hybrid torrents).
    pub info_hash_v2: Option<String>,
    pub name: String,
    /// "checking", "seeding", "paused" or "error".
    pub state: &'static str,
    /// Checking: the part done (0..=1); otherwise 1 when every piece is good.
    pub progress: f64,
    pub error: Option<String>,
    pub size: u64,
    pub pieces: usize,
    pub pieces_good: usize,
    pub peers: usize,
    pub unchoked: usize,
    /// Bytes per second over the last 10 s.
    pub upload_rate: u64,
    pub uploaded_session: u64,
    pub uploaded_total: u64,
    pub limits: Limits,
    pub trackers: Vec<Tracker>,
    /// "config", "cli", "watch" or "api".
    pub source: &'static str,
    pub data_dir: String,
    pub private: bool,
    pub added: i64,
    pub magnet: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub address: String,
    /// Decoded from the peer id ("qBittorrent 4.5.2"), or the id's printable prefix.
    pub client: String,
    pub peer_id: String,
    pub upload_rate: u64,
    pub uploaded: u64,
    /// "plaintext", "mse_plaintext" or "mse_rc4".
    pub encryption: &'static str,
    /// "incoming" or "outgoing" (dialled by us: from a tracker, PEX or the API).
    pub source: &'static str,
    /// "tcp" or "utp".
    pub transport: &'static str,
    /// qBittorrent-style flags: U unchoked by us, u interested, E encrypted, I incoming,
    /// P uTP.
    pub flags: String,
    pub unchoked: bool,
    pub interested: bool,
    pub connected: i64,
}

/// The API's view of one torrent; `all_time_before` is what earlier runs uploaded.
pub fn torrent(control: &Control, entry: &Entry, all_time_before: u64) -> Torrent {
    let shared = &control.shared;
    let t = &entry.spec.torrent;
    let ih = t.info_hash;
    let state = shared.torrents.get(&ih);
    let pieces = t.num_pieces();
    let secs = shared.clock_ns(crate::io::conn::now()) / 1_000_000_000;
    let (name, progress, error, good, peers, unchoked, rate) = match &state {
        Some(TorrentState::Checking(c)) => {
            let done = c.done_bytes.load(Ordering::Relaxed) as f64;
            let p = if c.total_bytes == 0 {
                1.0
            } else {
                done / c.total_bytes as f64
            };
            ("checking", p.min(1.0), None, 0, 0, 0, 0)
        }
        Some(TorrentState::Live(ctx)) => {
            let good = ctx.view.have.count();
            let handles = ctx.peer_handles();
            let unchoked = handles
                .iter()
                .filter(|h| h.unchoked.load(Ordering::Relaxed))
                .count();
            let name = if good == 0 { "error" } else { "seeding" };
            let error = (good == 0).then(|| "no piece of the data is present and good".to_string());
            (
                name,
                good as f64 / pieces.max(1) as f64,
                error,
                good,
                handles.len(),
                unchoked,
                ctx.meter.rate(secs),
            )
        }
        Some(TorrentState::Paused(p)) => (
            "paused",
            p.pieces_good as f64 / pieces.max(1) as f64,
            None,
            p.pieces_good,
            0,
            0,
            0,
        ),
        Some(TorrentState::Error(f)) => ("error", 0.0, Some(f.reason.clone()), 0, 0, 0, 0),
        None => ("error", 0.0, Some("not in the table".into()), 0, 0, 0, 0),
    };
    let session = control.uploaded_session(&ih);
    Torrent {
        info_hash: ih.to_string(),
        hash_kind: t.hash_kind().as_str(),
        info_hash_v2: t.v2.as_ref().map(|v2| crate::metainfo::hex(&v2.info_hash)),
        name: t.name.clone(),
        state: name,
        progress,
        error,
        size: t.total_length,
        pieces,
        pieces_good: good,
        peers,
        unchoked,
        upload_rate: rate,
        uploaded_session: session,
        uploaded_total: all_time_before + session,
        limits: Limits {
            upload_rate_limit: entry.spec.limits.upload_rate,
            upload_quota: entry.spec.limits.upload_quota,
        },
        trackers: trackers(control, &ih, &entry.spec.torrent.trackers),
        source: entry.spec.origin.as_str(),
        data_dir: entry.spec.data_dir.display().to_string(),
        private: t.private,
        added: entry.added_unix,
        magnet: t.magnet(),
    }
}

fn trackers(control: &Control, ih: &InfoHash, tiers: &[Vec<String>]) -> Vec<Tracker> {
    let status = control.shared.tracker_status();
    let now = std::time::Instant::now();
    let unix = crate::state::unix_now();
    let mut seen = std::collections::HashSet::new();
    tiers
        .iter()
        .flatten()
        .filter(|u| seen.insert(u.as_str()))
        .map(|url| {
            let st = status
                .iter()
                .find(|(h, u, _)| h == ih && u == url)
                .map(|(_, _, s)| s);
            let contacted = st.is_some_and(|s| s.announces + s.failures > 0);
            Tracker {
                url: crate::tracker::redact::redact(url),
                status: match st {
                    Some(s) if s.ok => "working",
                    Some(_) if contacted => "error",
                    _ => "not contacted",
                },
                last_error: st.and_then(|s| {
                    s.last_error
                        .as_deref()
                        .map(crate::tracker::redact::redact_in)
                }),
                announces: st.map_or(0, |s| s.announces),
                failures: st.map_or(0, |s| s.failures),
                last_announce: st.and_then(|s| s.last_announce_unix).filter(|_| contacted),
                next_announce_in_secs: st
                    .and_then(|s| s.next_announce)
                    .map(|n| n.saturating_duration_since(now).as_secs()),
                seeders: st.and_then(|s| s.seeders),
                leechers: st.and_then(|s| s.leechers),
                completed: st.and_then(|s| s.completed),
            }
        })
        .filter(|_| unix > 0)
        .collect()
}

/// Every connected peer of a live torrent.
pub fn peers(control: &Control, ih: &InfoHash) -> Vec<Peer> {
    let Some(ctx) = control.shared.torrent(ih) else {
        return Vec::new();
    };
    let secs = control.shared.clock_ns(crate::io::conn::now()) / 1_000_000_000;
    let mut out: Vec<Peer> = ctx.peer_handles().iter().map(|h| peer(h, secs)).collect();
    out.sort_by(|a, b| b.uploaded.cmp(&a.uploaded).then(a.address.cmp(&b.address)));
    out
}

fn peer(h: &PeerHandle, secs: u64) -> Peer {
    let i = &h.info;
    let unchoked = h.unchoked.load(Ordering::Relaxed);
    let interested = h.interested.load(Ordering::Relaxed);
    let mut flags = String::new();
    for (on, c) in [
        (unchoked, 'U'),
        (interested, 'u'),
        (
            i.encryption != crate::reasons::HandshakeKind::Plaintext,
            'E',
        ),
        (!i.outgoing, 'I'),
        (i.utp, 'P'),
    ] {
        if on {
            flags.push(c);
        }
    }
    Peer {
        address: i.addr.to_string(),
        client: client_name(&i.peer_id),
        peer_id: i.peer_id.iter().map(|b| format!("{b:02x}")).collect(),
        upload_rate: h.meter.rate(secs),
        uploaded: h.uploaded.load(Ordering::Relaxed),
        encryption: i.encryption.as_str(),
        source: if i.outgoing { "outgoing" } else { "incoming" },
        transport: if i.utp { "utp" } else { "tcp" },
        flags,
        unchoked,
        interested,
        connected: i.connected_unix,
    }
}

/// A client's name and version from its peer id (Azureus style `-XXvvvv-`, and the few other
/// styles in use), else the id's printable start.
pub fn client_name(id: &[u8; 20]) -> String {
    const AZ: &[(&str, &str)] = &[
        ("qB", "qBittorrent"),
        ("LT", "libtorrent"),
        ("lt", "rTorrent/libtorrent"),
        ("TR", "Transmission"),
        ("DE", "Deluge"),
        ("UT", "µTorrent"),
        ("BI", "BiglyBT"),
        ("AZ", "Vuze"),
        ("WW", "WebTorrent"),
        ("WD", "WebTorrent Desktop"),
        ("rQ", "rqbit"),
        ("KT", "KTorrent"),
        ("US", "uringseed"),
        ("FD", "Free Download Manager"),
        ("TX", "Tixati"),
    ];
    if id[0] == b'-' && id[7] == b'-' {
        let code = std::str::from_utf8(&id[1..3]).unwrap_or("");
        let ver = &id[3..7];
        if let Some((_, name)) = AZ.iter().find(|(c, _)| *c == code) {
            let digits: Vec<String> = ver
                .iter()
                .map(|&b| match b {
                    b'0'..=b'9' => ((b - b'0') as u32).to_string(),
                    b'A'..=b'Z' => ((b - b'A') as u32 + 10).to_string(),
                    b'a'..=b'z' => ((b - b'a') as u32 + 36).to_string(),
                    _ => String::new(),
                })
                .collect();
            let v = match code {
                // Transmission: major, then a two-digit minor.
                "TR" => format!(
                    "{}.{}",
                    digits[0],
                    std::str::from_utf8(&ver[1..3])
                        .unwrap_or("")
                        .trim_start_matches('0')
                ),
                _ => digits[..3].join("."),
            };
            return format!("{name} {v}");
        }
    }
    if id.starts_with(b"A2-") {
        let rest: String = id[3..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'-')
            .map(|&b| b as char)
            .collect();
        let parts: Vec<&str> = rest.split('-').filter(|s| !s.is_empty()).collect();
        return format!("aria2 {}", parts.join("."));
    }
    let printable: String = id
        .iter()
        .take_while(|b| b.is_ascii_graphic())
        .take(8)
        .map(|&b| b as char)
        .collect();
    if printable.is_empty() {
        "unknown".into()
    } else {
        format!("unknown ({printable})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> [u8; 20] {
        let mut a = [b'x'; 20];
        a[..s.len()].copy_from_slice(s.as_bytes());
        a
    }

    #[test]
    fn client_names_from_peer_ids() {
        assert_eq!(client_name(&id("-qB4520-")), "qBittorrent 4.5.2");
        assert_eq!(client_name(&id("-LT2080-")), "libtorrent 2.0.8");
        assert_eq!(client_name(&id("-TR4050-")), "Transmission 4.5");
        assert_eq!(client_name(&id("A2-1-37-0-")), "aria2 1.37.0");
        assert_eq!(client_name(&id("-ZZ1000-")), "unknown (-ZZ1000-)");
        assert_eq!(client_name(&[0u8; 20]), "unknown");
    }
}
