//! Opening a peer connection up to the end of the BitTorrent handshake: telling a plain
//! handshake from a Message Stream Encryption one, driving the sans-IO MSE machines
//! ([`crate::wire::mse`]) over the stream, and handing the connection on with its RC4 streams
//! (if any) and the payload bytes already read. All of it runs under the handshake timeout.
//!
//! It may not look past the handshake: what follows belongs to `super::conn`.

use super::stream::{send_all, Stream};
use crate::config::Encryption;
use crate::metainfo::InfoHash;
use crate::reasons::{DropReason, HandshakeKind};
use crate::state::{Shared, TorrentCtx};
use crate::wire::handshake::{Handshake, HANDSHAKE_LEN, PROTOCOL};
use crate::wire::mse::{self, Established, Initiator, Policy, Rc4, Responder};
use bytes::Bytes;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Bytes read from the socket per read during the handshake.
const READ_CHUNK: usize = 4 << 10;
/// Longest random padding we send after our MSE public key.
const MAX_OUR_PAD: usize = 64;

/// A connection past the handshake.
pub struct Opened {
    pub hs: Handshake,
    pub ctx: Arc<TorrentCtx>,
    /// Decrypts what the peer sends (RC4 payload), None in plaintext. (Boxed: plaintext
    /// connections, the many, then carry a pointer, not 260 bytes.)
    pub rx: Option<Box<Rc4>>,
    /// Encrypts what we send, None in plaintext.
    pub tx: Option<Box<Rc4>>,
    /// Payload bytes that arrived with the handshake (already decrypted).
    pub leftover: Vec<u8>,
    pub kind: HandshakeKind,
}

struct Opening<'a, S> {
    stream: &'a S,
    /// The evictor and this connection's key, told once the peer has sent anything.
    talking: Option<(&'a crate::state::evict::Evictor, u64)>,
    stall: Duration,
    rx: Option<Box<Rc4>>,
    /// Received bytes not consumed yet (decrypted once the payload is encrypted).
    buf: Vec<u8>,
}

impl<S: Stream> Opening<'_, S> {
    /// Reads once; the bytes are returned raw (for the MSE machines) and not buffered.
    async fn read_raw(&mut self) -> Result<Vec<u8>, DropReason> {
        let (res, mut chunk) = self.stream.read(vec![0u8; READ_CHUNK]).await;
        match res {
            Ok(0) | Err(_) => Err(DropReason::ClosedInHandshake),
            Ok(n) => {
                chunk.truncate(n);
                if let Some((evictor, key)) = self.talking.take() {
                    evictor.talking(key);
                }
                Ok(chunk)
            }
        }
    }

    /// Reads once more into `buf`, decrypting when the payload is encrypted.
    async fn read_more(&mut self) -> Result<(), DropReason> {
        let mut chunk = self.read_raw().await?;
        if let Some(rx) = &mut self.rx {
            rx.apply(&mut chunk);
        }
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    async fn send(&self, bytes: Vec<u8>) -> Result<(), DropReason> {
        if bytes.is_empty() {
            return Ok(());
        }
        send_all(self.stream, vec![Bytes::from(bytes)], self.stall)
            .await
            .map_err(|_| DropReason::ClosedInHandshake)
    }

    /// An incoming connection: a plain handshake, or an MSE one answered as the responder.
    async fn accept(
        &mut self,
        shared: &Shared,
        policy: Encryption,
        peer: IpAddr,
    ) -> Result<Option<Established>, DropReason> {
        let mut plain = [0u8; 20];
        plain[0] = PROTOCOL.len() as u8;
        plain[1..].copy_from_slice(PROTOCOL);
        loop {
            let n = self.buf.len().min(plain.len());
            if self.buf[..n] != plain[..n] {
                break;
            }
            if n == plain.len() {
                if policy == Encryption::Required {
                    return Err(DropReason::EncryptionRequired);
                }
                return Ok(None);
            }
            self.read_more().await?;
        }
        if policy == Encryption::Disabled {
            return Err(DropReason::BadHandshake);
        }
        // Paid for before the key pair is made (see `state::mse_budget`).
        let peer = peer.to_canonical();
        let group = if peer.is_loopback() && !shared.config.server.limit_loopback {
            None
        } else {
            Some(crate::state::address_group(peer))
        };
        if let Some(group) = group {
            shared
                .mse_budget
                .take(group, super::stream::now())
                .map_err(|_| DropReason::MseBudget)?;
        }
        let mut responder = Responder::new(
            random_bytes(),
            random_pad(),
            Policy {
                allow_plaintext: policy != Encryption::Required,
                prefer_rc4: false,
            },
        );
        // Either of a hybrid's info-hashes may be the SKEY.
        let find = |req2: &[u8; 20]| {
            shared
                .live_torrents()
                .iter()
                .flat_map(|t| {
                    [
                        Some(t.view.info_hash),
                        t.view.v2.as_ref().map(|v| v.info_hash),
                    ]
                })
                .flatten()
                .find(|ih| mse::req2_hash(ih) == *req2)
        };
        let mut input = std::mem::take(&mut self.buf);
        loop {
            let done = responder.feed(&input, find).map_err(|e| e.reason())?;
            self.send(responder.take_output()).await?;
            if done.is_some() {
                if let Some(group) = group {
                    shared.mse_budget.proved(group);
                }
                return Ok(done);
            }
            input = self.read_raw().await?;
        }
    }

    /// An outgoing MSE connection for `info_hash` (RC4 payload only), with our BitTorrent
    /// handshake as the initial payload.
    async fn initiate(
        &mut self,
        shared: &Shared,
        info_hash: InfoHash,
    ) -> Result<Established, DropReason> {
        let ours = Handshake::ours(info_hash, shared.peer_id).encode().to_vec();
        let mut initiator = Initiator::new(
            random_bytes(),
            random_pad(),
            info_hash,
            mse::CRYPTO_RC4,
            ours,
        );
        loop {
            self.send(initiator.take_output()).await?;
            let input = self.read_raw().await?;
            if let Some(done) = initiator.feed(&input).map_err(|e| e.reason())? {
                return Ok(done);
            }
        }
    }
}

/// Random bytes from the kernel (getrandom(2)), for MSE keys and padding.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: getrandom writes at most N - filled bytes at the given position of `out`.
        let r = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if r > 0 {
            filled += r as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            panic!("getrandom failed: {}", io::Error::last_os_error());
        }
    }
    out
}

fn random_pad() -> Vec<u8> {
    let [len] = random_bytes::<1>();
    let mut pad = random_bytes::<MAX_OUR_PAD>().to_vec();
    pad.truncate(usize::from(len) % (MAX_OUR_PAD + 1));
    pad
}

/// Runs the handshake of a new connection under the handshake timeout. `dialed` is the torrent
/// of a connection we made (we speak first), `None` for an incoming one.
pub async fn open<S: Stream>(
    shared: &Shared,
    stream: &S,
    dialed: Option<InfoHash>,
    key: u64,
    peer: IpAddr,
) -> Result<Opened, DropReason> {
    let policy = shared.config.server.encryption;
    let mut o = Opening {
        stream,
        talking: Some((&shared.evictor, key)),
        stall: Duration::from_secs(shared.config.server.write_stall_secs),
        rx: None,
        buf: Vec::new(),
    };
    let exchange = async {
        let est = match dialed {
            Some(ih) if policy == Encryption::Required => Some(o.initiate(shared, ih).await?),
            Some(ih) => {
                let ours = Handshake::ours(ih, shared.peer_id).encode().to_vec();
                o.send(ours).await?;
                None
            }
            None => o.accept(shared, policy, peer).await?,
        };
        let (tx, kind, skey) = match est {
            Some(e) => {
                o.rx = e.rx.map(Box::new);
                o.buf = e.initial;
                let kind = if e.method == mse::CRYPTO_RC4 {
                    HandshakeKind::MseRc4
                } else {
                    HandshakeKind::MsePlaintext
                };
                (e.tx.map(Box::new), kind, Some(e.info_hash))
            }
            None => (None, HandshakeKind::Plaintext, None),
        };
        while o.buf.len() < HANDSHAKE_LEN {
            o.read_more().await?;
        }
        let hs = match Handshake::decode(&o.buf[..HANDSHAKE_LEN]) {
            Ok(Some(hs)) => hs,
            _ => return Err(DropReason::BadHandshake),
        };
        if skey.is_some_and(|ih| ih != hs.info_hash) {
            return Err(DropReason::WrongInfoHash);
        }
        Ok((hs, tx, kind))
    };
    let (hs, tx, kind) = tokio::time::timeout(shared.handshake_timeout(), exchange)
        .await
        .map_err(|_| DropReason::HandshakeTimeout)??;
    if dialed.is_some_and(|ih| ih != hs.info_hash) {
        return Err(DropReason::WrongInfoHash);
    }
    if hs.peer_id == shared.peer_id {
        return Err(DropReason::SelfConnection);
    }
    let ctx = shared
        .torrent(&hs.info_hash)
        .ok_or(DropReason::UnknownInfoHash)?;
    if ctx.peers.load(Ordering::Relaxed) >= shared.config.server.max_connections_per_torrent
        && (dialed.is_some()
            || !shared
                .evictor
                .evict_for(Some(&ctx.view.info_hash), super::stream::now()))
    {
        return Err(DropReason::TorrentConnectionCap);
    }
    Ok(Opened {
        hs,
        ctx,
        rx: o.rx,
        tx,
        leftover: o.buf.split_off(HANDSHAKE_LEN),
        kind,
    })
}
