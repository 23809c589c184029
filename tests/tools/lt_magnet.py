#!/usr/bin/python3
"""libtorrent given a magnet link, and libtorrent leechers with peer exchange: the
`magnet-info`, `magnet-download` and `pex-leech` commands of lt_tool.py (run them through it;
usage there and in tests/tools/README.md).

Every session here is set up before it starts: DHT, LSD, UPnP, NAT-PMP, uTP and the IP notifier
off; it listens on LT_BIND_IP (default 127.0.0.1, a random port) and dials from that address;
`allow_multiple_connections_per_ip` (every peer is on loopback). Progress and alerts go to
stderr, results to stdout as "key value" lines.
"""
import os
import signal
import sys
import time

import libtorrent as lt

# lt_tool.py's own helpers (this file sits beside it, so it is on sys.path).
from lt_tool import encryption_settings, log, parse_peer

# peer_info.source bits (libtorrent's peer_info::tracker ... incoming).
SOURCES = ((1, "tracker"), (2, "dht"), (4, "pex"), (8, "lsd"), (16, "resume_data"),
           (32, "incoming"))
DONE_STATES = (lt.torrent_status.seeding, lt.torrent_status.finished)
CHECKING = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)


def source_names(bits):
    names = [name for bit, name in SOURCES if bits & bit]
    return ",".join(names) if names else "none"


def rate_env(name):
    try:
        return int(os.environ.get(name) or 0)
    except ValueError:
        sys.stderr.write("lt_tool.py: %s must be a whole number of bytes per second\n" % name)
        sys.exit(2)


def loopback_session(t0):
    """A session as described at the top; LT_DOWNLOAD_RATE caps its download (bytes/s),
    LT_MAX_METADATA_SIZE replaces libtorrent's max_metadata_size (30 MiB by default in 2.0)."""
    bind_ip = os.environ.get("LT_BIND_IP") or "127.0.0.1"
    cats = lt.alert.category_t
    settings = {
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_ip_notifier": False,
        "listen_interfaces": "%s:0" % bind_ip,
        "outgoing_interfaces": bind_ip,
        "allow_multiple_connections_per_ip": True,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "min_announce_interval": 1,
        "announce_to_all_tiers": True, "announce_to_all_trackers": True,
        "alert_mask": cats.status_notification | cats.error_notification
                      | cats.peer_notification | cats.connect_notification
                      | cats.tracker_notification,
    }
    settings.update(encryption_settings())
    max_meta = os.environ.get("LT_MAX_METADATA_SIZE")
    if max_meta:
        settings["max_metadata_size"] = int(max_meta)
    rate = rate_env("LT_DOWNLOAD_RATE")
    if rate > 0:
        settings["download_rate_limit"] = rate
    # The default plugins (ut_metadata, ut_pex, smart_ban) are part of every session.
    ses = lt.session(settings)
    if rate > 0:
        # Loopback peers are in the local peer class only: limit that one too.
        pc = ses.get_peer_class(ses.local_peer_class_id)
        pc["download_limit"] = rate
        ses.set_peer_class(ses.local_peer_class_id, pc)
        log(t0, "download rate limited to %d B/s" % rate)
    deadline = time.time() + 30
    while not ses.is_listening() or ses.listen_port() == 0:
        if time.time() >= deadline:
            log(t0, "not listening after 30 s")
            sys.exit(1)
        time.sleep(0.05)
    return ses, bind_ip


def magnet_info(magnet):
    """What libtorrent's own magnet parser reads from MAGNET (no session, no networking)."""
    try:
        p = lt.parse_magnet_uri(magnet)
    except RuntimeError as e:
        sys.stderr.write("lt_tool.py magnet-info: %s\n" % e)
        sys.exit(1)
    print("infohash", p.info_hashes.v1)
    print("name", p.name)
    for url in p.trackers:
        print("tracker", url)
    for host, port in p.peers:
        print("peer %s:%d" % (host, port))


def magnet_download(magnet, save_dir, peer, timeout):
    """Downloads MAGNET into SAVE_DIR: peers from its `tr` trackers, or (PEER) by dialling
    PEER. Prints connect_seconds (add_torrent to the first peer_connect_alert: libtorrent starts
    a torrent on its next tick, some 0.5 s later) and metadata_seconds (add_torrent to
    metadata_received_alert) as soon as each happens; at the end metadata_bytes (the info
    dictionary's size), files, infohash, state, downloaded and seconds. LT_STOP_AT_METADATA=1:
    stop once the metadata is in. Exit 1 on a timeout or a torrent error."""
    t0 = time.time()
    target = None if peer == "-" else parse_peer(peer)
    stop_at_metadata = os.environ.get("LT_STOP_AT_METADATA") == "1"
    ses, _ = loopback_session(t0)
    try:
        params = lt.parse_magnet_uri(magnet)
    except RuntimeError as e:
        sys.stderr.write("lt_tool.py magnet-download: bad magnet link: %s\n" % e)
        sys.exit(2)
    params.save_path = save_dir
    # PEX would only bring peers the seed knows; off like every other test client's.
    params.flags |= lt.torrent_flags.disable_pex
    added = time.time()
    h = ses.add_torrent(params)
    log(t0, "added %s; trackers: %s" % (params.info_hashes.v1,
                                       " ".join(t["url"] for t in h.trackers()) or "none"))
    deadline = t0 + timeout
    metadata_at = None
    connect_at = None
    dialled_at = None
    last_report = 0.0
    st = h.status()
    while True:
        now = time.time()
        st = h.status()
        for a in ses.pop_alerts():
            log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
            if isinstance(a, lt.peer_connect_alert) and connect_at is None:
                connect_at = time.time() - added
                print("connect_seconds", "%.3f" % connect_at)
            elif isinstance(a, lt.metadata_received_alert) and metadata_at is None:
                metadata_at = time.time() - added
                print("metadata_seconds", "%.3f" % metadata_at)
                sys.stdout.flush()
            elif isinstance(a, lt.torrent_error_alert):
                print("state", str(st.state))
                sys.exit(1)
        if metadata_at is not None and stop_at_metadata:
            break
        if st.has_metadata and st.state in DONE_STATES and st.progress >= 1.0:
            break
        if now >= deadline:
            log(t0, "timeout after %ss: state %s progress %.4f peers %d has_metadata %s"
                % (timeout, st.state, st.progress, st.num_peers, st.has_metadata))
            print("state", str(st.state))
            print("downloaded", st.total_payload_download)
            sys.exit(1)
        # Dial at once, then again every 5 s while no peer is connected.
        if target is not None and st.state not in CHECKING and st.num_peers == 0 and (
                dialled_at is None or now - dialled_at > 5):
            h.connect_peer(target)
            dialled_at = now
            log(t0, "connect_peer %s:%d" % target)
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f peers %d down %d B/s"
                % (st.state, st.progress, st.num_peers, st.download_payload_rate))
        ses.wait_for_alert(50)
    ti = h.torrent_file()
    print("metadata_bytes", len(ti.info_section()))
    print("files", ti.num_files())
    print("infohash", ti.info_hashes().v1)
    print("state", str(st.state))
    print("downloaded", st.total_payload_download)
    print("seconds", "%.2f" % (time.time() - t0))
    sys.stdout.flush()
    ses.remove_torrent(h)  # closes its files


class PeerLog:
    """Every peer a torrent was connected to: source bits (OR of all seen) and payload bytes
    downloaded from it (summed over its connections)."""

    def __init__(self):
        self.peers = {}

    def update(self, h, t0):
        for p in h.get_peer_info():
            key = "%s:%d" % (p.ip[0], p.ip[1])
            e = self.peers.get(key)
            if e is None:
                e = self.peers[key] = {"source": 0, "done": 0, "last": 0}
            changed = False
            if p.source | e["source"] != e["source"]:
                e["source"] |= p.source
                changed = True
            was = e["done"] + e["last"]
            if p.total_download < e["last"]:  # a new connection: its counter starts again
                e["done"] += e["last"]
            e["last"] = p.total_download
            if was == 0 and self.down(key) > 0:
                changed = True
            if changed:
                self.print(key, t0)

    def down(self, key):
        e = self.peers[key]
        return e["done"] + e["last"]

    def print(self, key, t0):
        print("peer %s source=%s down=%d at=%.1f"
              % (key, source_names(self.peers[key]["source"]), self.down(key), time.time() - t0))
        sys.stdout.flush()


def pex_leech(torrent, save_dir, peer, timeout):
    """Downloads TORRENT knowing only PEER, with peer exchange on; prints `listening IP:PORT`,
    then a `peer IP:PORT source=S down=N at=SECS` line whenever a peer first shows up, its
    source changes or its first payload arrives, and at the end one such line for every peer
    and `state`, `downloaded`. Ends when complete, on SIGTERM/SIGINT (exit 0) or at TIMEOUT
    (exit 1). LT_PEX_ON_PRIVATE=1: add the torrent by its info-hash and hand libtorrent the
    metadata only then, so that its ut_pex plugin (which libtorrent leaves out for torrents
    it already knows to be private) is attached and peer lists from the seed would be heard
    even for a private torrent."""
    t0 = time.time()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    target = parse_peer(peer)
    ses, bind_ip = loopback_session(t0)
    print("listening %s:%d" % (bind_ip, ses.listen_port()))
    sys.stdout.flush()
    ti = lt.torrent_info(torrent)
    params = lt.add_torrent_params()
    params.save_path = save_dir
    late_metadata = os.environ.get("LT_PEX_ON_PRIVATE") == "1"
    if late_metadata:
        params.info_hashes = ti.info_hashes()
    else:
        params.ti = ti
    h = ses.add_torrent(params)
    if late_metadata:
        h.set_metadata(ti.info_section())
    log(t0, "added %s (private %s) with %s" % (ti.info_hashes().v1, ti.priv(),
                                               "late metadata" if late_metadata else "metadata"))
    peers = PeerLog()
    deadline = t0 + timeout
    dialled_at = None
    last_report = 0.0
    code = 0
    while not stop:
        now = time.time()
        st = h.status()
        for a in ses.pop_alerts():
            log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
        peers.update(h, t0)
        if st.has_metadata and st.state in DONE_STATES and st.progress >= 1.0:
            break
        if now >= deadline:
            log(t0, "timeout after %ss: state %s progress %.4f" % (timeout, st.state, st.progress))
            code = 1
            break
        # Dial the seed once the check is done; again every 5 s while not connected to it.
        to_seed = "%s:%d" % target in [("%s:%d" % p.ip) for p in h.get_peer_info()]
        if st.has_metadata and st.state not in CHECKING and not to_seed and (
                dialled_at is None or now - dialled_at > 5):
            h.connect_peer(target)
            dialled_at = now
            log(t0, "connect_peer %s:%d" % target)
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f peers %d down %d B/s"
                % (st.state, st.progress, st.num_peers, st.download_payload_rate))
        ses.wait_for_alert(200)
    if stop:
        log(t0, "signal: stopping")
    peers.update(h, t0)
    for key in sorted(peers.peers):
        peers.print(key, t0)
    st = h.status()
    print("state", str(st.state))
    print("downloaded", st.total_payload_download)
    sys.stdout.flush()
    ses.remove_torrent(h)
    sys.exit(code)


def positive(text, cmd):
    try:
        secs = float(text)
    except ValueError:
        secs = 0
    if not secs > 0:
        sys.stderr.write("lt_tool.py %s: TIMEOUT must be a positive number\n" % cmd)
        sys.exit(2)
    return secs


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "magnet-info" and len(args) == 1:
        magnet_info(args[0])
    elif cmd == "magnet-download" and len(args) == 4:
        magnet_download(args[0], args[1], args[2], positive(args[3], cmd))
    elif cmd == "pex-leech" and len(args) == 4:
        pex_leech(args[0], args[1], args[2], positive(args[3], cmd))
    else:
        sys.stderr.write("usage: lt_tool.py magnet-info MAGNET | magnet-download MAGNET SAVE_DIR "
                         "PEER|- TIMEOUT | pex-leech TORRENT SAVE_DIR PEER TIMEOUT\n")
        sys.exit(2)
