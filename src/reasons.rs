//! Typed labels: why a peer was dropped, why a request was refused, how a handshake went, how an
//! announce ended, where a peer address came from, and the choker's commands to a connection.
//!
//! Each label set is one enum declared with `labels!`, which also gives it its metrics label
//! (`label()`), the list of every value (`ALL`) and a dense index. Counters
//! ([`LabelCounters`]) and the metrics endpoint are built from `ALL`, so a value added here is
//! exported (as 0 until it occurs) without touching anything else, and the dashboard's panels
//! group by the label rather than list values. This module owns only the names: it counts
//! nothing and knows no other module.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// A closed set of metrics label values.
pub trait Label: Copy + Eq + fmt::Debug + 'static {
    /// Every value, in declaration order (`ALL[v.index()] == v`).
    const ALL: &'static [Self];
    /// The name of the label (`reason`, `kind`, ...) in the exported metric.
    const NAME: &'static str;
    /// The value as exported.
    fn label(self) -> &'static str;
    /// Position in [`Label::ALL`].
    fn index(self) -> usize;
}

/// Declares a label enum: `labels! { /// doc \n pub enum Name("label name") { Variant = "text", ... } }`.
macro_rules! labels {
    ($(#[$meta:meta])* pub enum $name:ident($label_name:literal) {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The metrics label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl Label for $name {
            const ALL: &'static [$name] = &[$($name::$variant,)*];
            const NAME: &'static str = $label_name;
            fn label(self) -> &'static str {
                self.as_str()
            }
            fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

labels! {
    /// Why the server closed a connection (`uringseed_peers_dropped_total{reason}`).
    pub enum DropReason("reason") {
        /// Not a BitTorrent handshake (and not an encrypted one where those are allowed).
        BadHandshake = "bad_handshake",
        UnknownInfoHash = "unknown_info_hash",
        HandshakeTimeout = "handshake_timeout",
        ClosedInHandshake = "closed_in_handshake",
        /// `server.max_connections` reached.
        ConnectionCap = "connection_cap",
        /// `server.max_connections_per_ip` reached.
        IpConnectionCap = "ip_connection_cap",
        /// The address is in `server.blocklist`.
        Blocked = "blocked",
        /// `server.max_connections_per_torrent` reached.
        TorrentConnectionCap = "torrent_connection_cap",
        /// Made room for a newcomer at a full cap: it was half-open past its grace or beyond
        /// `server.max_half_open`, or handshaken and uninterested the longest.
        Evicted = "evicted",
        /// An encrypted handshake beyond `server.mse_handshakes_per_sec` or
        /// `server.mse_handshakes_per_ip_per_sec`, closed before any key was made.
        MseBudget = "mse_budget",
        /// A second connection from a peer id already connected.
        DuplicatePeer = "duplicate_peer",
        /// We connected to ourselves.
        SelfConnection = "self_connection",
        /// The handshake names another torrent than the one we dialled (or than its SKEY).
        WrongInfoHash = "wrong_info_hash",
        MessageTooLong = "message_too_long",
        MalformedMessage = "malformed_message",
        BadBitfield = "bad_bitfield",
        BadHave = "bad_have",
        /// A request above `server.max_request_bytes` from a peer without BEP 6.
        OversizedRequest = "oversized_request",
        RequestOutOfRange = "request_out_of_range",
        UnavailablePiece = "unavailable_piece",
        QueueFull = "queue_full",
        /// More unsent control output than `server.max_send_buffer_bytes`.
        OutputBacklog = "output_backlog",
        IdleTimeout = "idle_timeout",
        /// Writes made no progress for `server.write_stall_secs`.
        WriteStall = "write_stall",
        /// Piece data could not be read and the peer cannot be told with a reject.
        PieceReadError = "piece_read_error",
        /// The peer has every piece: nothing to send it (seeds do not trade).
        PeerIsSeed = "peer_is_seed",
        TorrentRemoved = "torrent_removed",
        /// A plain handshake while `server.encryption = "required"`.
        EncryptionRequired = "encryption_required",
        MseBadKey = "mse_bad_key",
        MseNoSync = "mse_no_sync",
        MseBadVc = "mse_bad_vc",
        MseBadLength = "mse_bad_length",
        MseNoCommonMethod = "mse_no_common_method",
        /// A BEP 10 message that does not parse (bad bencode, nesting, ids, BEP 9/11 shape).
        MalformedExtension = "malformed_extension",
        /// An extended message before the extension handshake (or without the extension bit).
        ExtensionBeforeHandshake = "extension_before_handshake",
    }
}

labels! {
    /// Why a block request was refused with a BEP 6 reject (`uringseed_requests_rejected_total`).
    pub enum RejectReason("reason") {
        /// Requested while choked.
        Choked = "choked",
        Oversized = "oversized",
        OutOfRange = "out_of_range",
        /// The piece is not verified (or was withdrawn).
        Unavailable = "unavailable",
        QueueFull = "queue_full",
        /// Its data could not be read.
        ReadError = "read_error",
        /// Super-seeding: a piece not offered to this peer.
        NotOffered = "not_offered",
    }
}

labels! {
    /// What became of a BEP 52 hash request (`uringseed_peer_hash_requests_total{result}`).
    pub enum HashReply("result") {
        /// Answered with the nodes and their proof.
        Served = "served",
        /// Not a v2 torrent, or no file of it has that root.
        UnknownRoot = "unknown_root",
        /// A file of one piece or less: its root is its only node above the blocks.
        NoPieceLayer = "no_piece_layer",
        /// Length not a power of two in 2..=512, index not a multiple of it, the range past the
        /// layer's end, more proof layers than the tree has, or (below the piece layer) more
        /// data to read than 8 MiB or one piece.
        BadRange = "bad_range",
        /// Over the per-peer rate of hash requests (or of those that read data).
        Rate = "rate",
        /// Block hashes of data that could not be read or no longer matches its piece layer.
        Unavailable = "unavailable",
        /// The reply would not fit in the peer's unsent control bytes.
        Backlog = "backlog",
    }
}

labels! {
    /// How a peer completed its handshake (`uringseed_peer_handshakes_total{kind}`).
    pub enum HandshakeKind("kind") {
        Plaintext = "plaintext",
        /// Message Stream Encryption handshake, plaintext payload.
        MsePlaintext = "mse_plaintext",
        /// Message Stream Encryption with an RC4-encrypted payload.
        MseRc4 = "mse_rc4",
    }
}

labels! {
    /// How one tracker announce ended (`uringseed_tracker_announces_total{result}`).
    pub enum AnnounceResult("result") {
        Ok = "ok",
        /// The tracker refused (`failure reason`, UDP error).
        Failure = "failure",
        /// No usable answer: connection, timeout, HTTP status.
        Unreachable = "unreachable",
        /// An answer that is not a valid reply.
        Malformed = "malformed",
    }
}

labels! {
    /// Where a peer address came from (`uringseed_peer_candidates_total{source}`).
    pub enum PeerSourceKind("source") {
        Tracker = "tracker",
        Dht = "dht",
        Pex = "pex",
        /// Added by an operator (control API).
        Api = "api",
    }
}

labels! {
    /// What became of a peer address offered for dialling
    /// (`uringseed_peer_candidates_total{result}`).
    pub enum CandidateResult("result") {
        /// Queued and then dialled.
        Dialed = "dialed",
        /// One of our own addresses (peer listeners, metrics/API, web seed, built-in tracker).
        OwnAddress = "own_address",
        /// Port 0, or an unspecified, broadcast or multicast address.
        Invalid = "invalid",
        /// A port below 1024 (`server.dial_privileged_ports` is off).
        PrivilegedPort = "privileged_port",
        Blocked = "blocked",
        /// Already queued, or tried within the redial window.
        Duplicate = "duplicate",
        /// The torrent is gone, or it or the server is at its connection cap.
        NoRoom = "no_room",
        /// The queue of addresses waiting for a dial slot is full.
        QueueFull = "queue_full",
    }
}

labels! {
    /// Which limit an upload waited for (`uringseed_upload_throttled_seconds_total{scope}`).
    pub enum ThrottleScope("scope") {
        /// `server.upload_rate_limit` (or the quota rate once the server's quota is used up).
        Server = "server",
        /// A torrent's `upload_rate_limit` (or the quota rate once its quota is used up).
        Torrent = "torrent",
    }
}

/// Counts per label value: one lock-free counter per value of `L`.
#[derive(Debug)]
pub struct LabelCounters<L: Label> {
    counts: Box<[AtomicU64]>,
    _label: std::marker::PhantomData<L>,
}

impl<L: Label> Default for LabelCounters<L> {
    fn default() -> Self {
        LabelCounters {
            counts: L::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            _label: std::marker::PhantomData,
        }
    }
}

impl<L: Label> LabelCounters<L> {
    pub fn inc(&self, label: L) {
        self.add(label, 1);
    }

    pub fn add(&self, label: L, n: u64) {
        self.counts[label.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, label: L) -> u64 {
        self.counts[label.index()].load(Ordering::Relaxed)
    }

    /// Every value with its count (zeros included), in declaration order.
    pub fn all(&self) -> Vec<(L, u64)> {
        L::ALL.iter().map(|&l| (l, self.get(l))).collect()
    }
}

/// What the choker asks one connection to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChokeCmd {
    Choke,
    Unchoke,
}

/// The latest [`ChokeCmd`] for a connection not yet carried out (a newer one replaces it).
#[derive(Debug, Default)]
pub struct PendingChoke(AtomicU8);

impl PendingChoke {
    const NONE: u8 = 0;
    const CHOKE: u8 = 1;
    const UNCHOKE: u8 = 2;

    pub fn set(&self, cmd: ChokeCmd) {
        let v = match cmd {
            ChokeCmd::Choke => Self::CHOKE,
            ChokeCmd::Unchoke => Self::UNCHOKE,
        };
        self.0.store(v, Ordering::Release);
    }

    /// Takes the pending command, if any.
    pub fn take(&self) -> Option<ChokeCmd> {
        match self.0.swap(Self::NONE, Ordering::AcqRel) {
            Self::CHOKE => Some(ChokeCmd::Choke),
            Self::UNCHOKE => Some(ChokeCmd::Unchoke),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct<L: Label>() {
        let mut seen = std::collections::HashSet::new();
        for (i, l) in L::ALL.iter().enumerate() {
            assert_eq!(l.index(), i, "{l:?}");
            assert!(seen.insert(l.label()), "{} twice", l.label());
            assert!(
                l.label()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{} is not a snake_case label",
                l.label()
            );
        }
    }

    #[test]
    fn labels_are_distinct_snake_case_and_indexed_in_order() {
        distinct::<DropReason>();
        distinct::<RejectReason>();
        distinct::<HashReply>();
        distinct::<HandshakeKind>();
        distinct::<AnnounceResult>();
        distinct::<PeerSourceKind>();
        distinct::<CandidateResult>();
        distinct::<ThrottleScope>();
        assert_eq!(DropReason::ALL.len(), 35);
    }

    #[test]
    fn counters_count_per_value_and_list_zeros() {
        let c = LabelCounters::<RejectReason>::default();
        c.inc(RejectReason::Choked);
        c.add(RejectReason::ReadError, 3);
        assert_eq!(c.get(RejectReason::Choked), 1);
        assert_eq!(c.get(RejectReason::ReadError), 3);
        let all = c.all();
        assert_eq!(all.len(), RejectReason::ALL.len());
        assert_eq!(all[1], (RejectReason::Oversized, 0));
    }

    #[test]
    fn a_newer_choke_command_replaces_the_pending_one() {
        let p = PendingChoke::default();
        assert_eq!(p.take(), None);
        p.set(ChokeCmd::Unchoke);
        p.set(ChokeCmd::Choke);
        assert_eq!(p.take(), Some(ChokeCmd::Choke));
        assert_eq!(p.take(), None);
    }
}
