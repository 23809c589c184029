#!/usr/bin/python3
"""A private DHT (BEP 5) of libtorrent sessions on loopback, and libtorrent clients that use
it: the `dht-swarm`, `dht-leech` and `dht-announce` commands of lt_tool.py (run them through
it; usage there and in tests/tools/README.md).

Nothing here ever talks to the public DHT: `dht_bootstrap_nodes` is empty, and a node learns
other nodes only from `add_dht_node` (libtorrent never puts the routers of
`dht_bootstrap_nodes` into its routing table, so that setting could not wire a loopback DHT
anyway) and from the replies of the nodes it was given. Every session listens on a loopback
address only; its DHT runs on the UDP socket of that same IP:PORT.

Settings that matter on loopback (`dht_settings`):
- `dht_restrict_routing_ips` False: by default libtorrent keeps one node per IP in its routing
  table, and every node here is on 127.0.0.1 (or 127.0.0.x).
- `dht_restrict_search_ips` False: the same for the nodes of one lookup.
- `dht_prefer_verified_node_ids`, `dht_enforce_node_id` False: node IDs that do not match the
  node's IP (BEP 42) would otherwise be passed over or refused.
- `dht_ignore_dark_internet` False.
- `dht_announce_interval` (LT_DHT_ANNOUNCE_INTERVAL, default 10 s here, 900 s in libtorrent):
  how often the session re-announces its torrents (and looks them up again).
Progress and alerts go to stderr, results to stdout as "key value" lines, each flushed.
"""
import os
import select
import signal
import stat
import sys
import threading
import time

import libtorrent as lt

from lt_tool import encryption_settings, log, parse_peer
from lt_magnet import CHECKING, DONE_STATES, positive, source_names

CATS = lt.alert.category_t


def out(*words):
    print(*words)
    sys.stdout.flush()


def dht_settings(bind_ip, announce_interval=None):
    """Session settings for a loopback DHT node listening on BIND_IP (random port)."""
    if announce_interval is None:
        announce_interval = int(os.environ.get("LT_DHT_ANNOUNCE_INTERVAL") or 10)
    s = {
        "enable_dht": True, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_ip_notifier": False,
        "listen_interfaces": "%s:0" % bind_ip,
        "outgoing_interfaces": bind_ip,
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False, "dht_restrict_search_ips": False,
        "dht_prefer_verified_node_ids": False, "dht_enforce_node_id": False,
        "dht_ignore_dark_internet": False,
        "dht_announce_interval": announce_interval,
        "allow_multiple_connections_per_ip": True,
        # TCP only (uringseed speaks TCP); the DHT still runs on the UDP socket.
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "alert_mask": CATS.status_notification | CATS.error_notification
                      | CATS.peer_notification | CATS.connect_notification
                      | CATS.tracker_notification | CATS.dht_notification
                      | CATS.dht_operation_notification,
    }
    s.update(encryption_settings())
    return s


def parse_nodes(args):
    return [parse_peer(n) for n in args]


def env_nodes():
    """LT_DHT_NODES="IP:PORT,IP:PORT": the DHT nodes a client is given (empty: no DHT)."""
    text = os.environ.get("LT_DHT_NODES") or ""
    return [parse_peer(n) for n in text.split(",") if n.strip()]


def wait_listening(ses, t0, what):
    deadline = time.time() + 30
    while not ses.is_listening() or ses.listen_port() == 0:
        if time.time() >= deadline:
            log(t0, "%s: not listening after 30 s" % what)
            sys.exit(1)
        time.sleep(0.02)


def routing_nodes(ses):
    """Nodes in SES's routing table (dht_stats_alert), or None if none came within 1 s.
    Other alerts are consumed; only use this while nothing else needs them."""
    ses.post_dht_stats()
    end = time.time() + 1
    while time.time() < end:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.dht_stats_alert):
                return sum(b["num_nodes"] for b in a.routing_table)
    return None


def wait_dht(ses, nodes, t0, timeout=30):
    """Gives SES the NODES; waits (at most TIMEOUT s) until its routing table holds one."""
    for n in nodes:
        ses.add_dht_node(n)
    deadline = time.time() + timeout
    while True:
        n = routing_nodes(ses)
        if n:
            log(t0, "DHT: %d nodes in the routing table" % n)
            return n
        if time.time() >= deadline:
            log(t0, "DHT: no node in the routing table after %d s" % timeout)
            sys.exit(1)
        for node in nodes:
            ses.add_dht_node(node)


class AnnounceCheck:
    """Proof that a torrent's announce reached the DHT: libtorrent posts no alert when its
    announce_peer messages are sent (dht_reply_alert only comes when a lookup found peers), so
    this asks the DHT itself (`dht_get_peers`, once a second) until a reply lists ADDR
    (IP, PORT) for the torrent. `done_at` is then the time it first did."""

    def __init__(self, ses, info_hash, addr):
        self.ses, self.info_hash, self.addr = ses, info_hash, addr
        self.asked = 0.0
        self.done_at = None

    def tick(self):
        if self.done_at is None and time.time() - self.asked >= 1:
            self.asked = time.time()
            self.ses.dht_get_peers(self.info_hash)

    def alert(self, a):
        """True the first time A shows the announce."""
        if self.done_at is not None or not isinstance(a, lt.dht_get_peers_reply_alert):
            return False
        if str(a.info_hash) != str(self.info_hash):
            return False
        if any((p[0], p[1]) == self.addr for p in a.peers()):
            self.done_at = time.time()
            return True
        return False


def quiet(a):
    """Alerts too many to log: one per DHT query sent."""
    return isinstance(a, (lt.dht_outgoing_get_peers_alert, lt.dht_get_peers_reply_alert))


def stop_flag():
    """A list that becomes non-empty on SIGTERM/SIGINT, or when stdin (a pipe or socket: the
    parent holds it open) is closed. stdin from /dev/null (Rust's Stdio::null) is ignored."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("signal"))
    signal.signal(signal.SIGINT, lambda *_: stop.append("signal"))
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return stop
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        def watch():
            while True:
                r, _, _ = select.select([0], [], [])
                if r and not os.read(0, 4096):
                    stop.append("stdin closed")
                    return
        threading.Thread(target=watch, daemon=True).start()
    return stop


def dht_swarm(n, seconds, distinct_ips):
    """N DHT nodes wired to each other; prints `node IP:PORT` each and `ready`, then logs
    `announced INFOHASH IP:PORT node=NODE` for every announce_peer a node receives and
    `get_peers INFOHASH node=NODE` for every get_peers, until SECONDS pass (exit 0), SIGTERM or
    stdin closes (exit 0). Exit 1 if the routing tables do not fill within 30 s."""
    t0 = time.time()
    stop = stop_flag()
    sessions = []
    for i in range(n):
        ip = "127.0.0.%d" % (i + 2) if distinct_ips else "127.0.0.1"
        # The swarm itself announces nothing: its announce interval does not matter.
        sessions.append((lt.session(dht_settings(ip, 900)), ip))
    for ses, ip in sessions:
        wait_listening(ses, t0, "node on " + ip)
    addrs = ["%s:%d" % (ip, ses.listen_port()) for ses, ip in sessions]
    log(t0, "listening: " + " ".join(addrs))
    for ses, _ in sessions:
        for other, ip in sessions:
            if other is not ses:
                ses.add_dht_node((ip, other.listen_port()))
    want = min(n - 1, 8)
    deadline = t0 + 30
    pending = []  # alerts seen while waiting, handled after `ready`
    counts = [0] * n
    while True:
        for ses, _ in sessions:
            ses.post_dht_stats()
        time.sleep(0.1)
        for i, (ses, _) in enumerate(sessions):
            for a in ses.pop_alerts():
                if isinstance(a, lt.dht_stats_alert):
                    counts[i] = sum(b["num_nodes"] for b in a.routing_table)
                else:
                    pending.append((i, a))
        if all(c >= want for c in counts):
            break
        if time.time() >= deadline:
            log(t0, "routing tables after 30 s: %s (want %d each)" % (counts, want))
            sys.exit(1)
        if stop:
            sys.exit(1)
    for a in addrs:
        out("node", a)
    out("ready_seconds", "%.2f" % (time.time() - t0))
    out("ready")
    log(t0, "ready: routing tables %s" % counts)

    def handle(i, a):
        if isinstance(a, lt.dht_announce_alert):
            out("announced %s %s:%d node=%s" % (a.info_hash, a.ip, a.port, addrs[i]))
        elif isinstance(a, lt.dht_get_peers_alert):
            out("get_peers %s node=%s" % (a.info_hash, addrs[i]))
        elif isinstance(a, lt.dht_stats_alert):
            return
        else:
            log(t0, "%s alert %s: %s" % (addrs[i], type(a).__name__, a.message()))

    for i, a in pending:
        handle(i, a)
    end = t0 + seconds
    last_report = time.time()
    while not stop and time.time() < end:
        for i, (ses, _) in enumerate(sessions):
            for a in ses.pop_alerts():
                handle(i, a)
        if time.time() - last_report >= 10:
            last_report = time.time()
            log(t0, "dht_nodes " + " ".join(
                str(s.status().dht_nodes) for s, _ in sessions))
        sessions[0][0].wait_for_alert(50)
    log(t0, "stopping: %s" % (stop[0] if stop else "time is up"))
    for ses, _ in sessions:
        ses.pause()


class Peers:
    """Prints `peer IP:PORT source SRC` when an address is first seen and whenever the sources
    libtorrent credits it with grow (SRC: tracker,dht,pex,lsd,resume_data,incoming or none)."""

    def __init__(self):
        self.seen = {}

    def update(self, h):
        for p in h.get_peer_info():
            key = "%s:%d" % (p.ip[0], p.ip[1])
            old = self.seen.get(key, 0)
            if key not in self.seen or p.source | old != old:
                self.seen[key] = p.source | old
                out("peer %s source %s" % (key, source_names(self.seen[key])))


def dht_leech(magnet, save_dir, timeout, nodes):
    """Downloads MAGNET with the DHT as its only source of peers (no tracker, no peer given;
    PEX off), as a lookup-only client: the torrent's own DHT announces are off
    (torrent_flags.disable_dht), and the tool itself asks the DHT (`dht_get_peers`, every 2 s
    while no peer is connected) and dials each address a reply lists, crediting it to the
    DHT (`peer_info.dht`). It never announce_peers, so no peer can find it there: every peer
    it reports was found through a lookup and dialled by it.

    Prints `listening IP:PORT`, `dht_nodes N` once its routing table holds a node, `found
    IP:PORT` for each new address a lookup returned, `found_seconds` (add_torrent to the first
    lookup that listed a peer), `metadata_seconds` (add_torrent to the metadata), `peer IP:PORT
    source SRC` lines, then `downloaded`, `state`, `seconds`. Exit 0 when complete, 1 on
    timeout or a torrent error."""
    t0 = time.time()
    bind_ip = os.environ.get("LT_BIND_IP") or "127.0.0.1"
    ses = lt.session(dht_settings(bind_ip))
    wait_listening(ses, t0, "dht-leech")
    out("listening %s:%d" % (bind_ip, ses.listen_port()))
    out("dht_nodes", wait_dht(ses, nodes, t0))
    try:
        params = lt.parse_magnet_uri(magnet)
    except RuntimeError as e:
        sys.stderr.write("lt_tool.py dht-leech: bad magnet link: %s\n" % e)
        sys.exit(2)
    params.save_path = save_dir
    params.trackers = []  # the DHT only
    params.peers = []
    params.flags |= lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht
    # The v1 info-hash, or for a magnet with only `xt=urn:btmh:` the truncated v2 one (BEP 52).
    ih = params.info_hashes.get_best()
    added = time.time()
    h = ses.add_torrent(params)
    log(t0, "added %s (DHT lookups only)" % ih)
    peers = Peers()
    deadline = t0 + timeout
    metadata_at = None
    found_at = None
    found = {}  # address -> when last dialled
    asked_at = 0.0
    last_report = 0.0
    code = 0
    while True:
        now = time.time()
        st = h.status()
        for a in ses.pop_alerts():
            if not quiet(a):
                log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
            if isinstance(a, lt.metadata_received_alert) and metadata_at is None:
                metadata_at = time.time() - added
                out("metadata_seconds", "%.3f" % metadata_at)
            elif isinstance(a, lt.dht_get_peers_reply_alert) and str(a.info_hash) == str(ih):
                listed = [(p[0], p[1]) for p in a.peers()]
                log(t0, "lookup: %d peers %s" % (len(listed), listed))
                if listed and found_at is None:
                    found_at = time.time() - added
                    out("found_seconds", "%.3f" % found_at)
                connected = set((p.ip[0], p.ip[1]) for p in h.get_peer_info())
                for addr in listed:
                    if addr not in found:
                        out("found %s:%d" % addr)
                    elif addr in connected or time.time() - found[addr] < 5:
                        continue
                    found[addr] = time.time()
                    h.connect_peer(addr, lt.peer_info.dht)
            elif isinstance(a, lt.torrent_error_alert):
                code = 1
        peers.update(h)
        if code or (st.has_metadata and st.state in DONE_STATES and st.progress >= 1.0):
            break
        if now >= deadline:
            log(t0, "timeout after %ss: state %s progress %.4f peers %d has_metadata %s"
                % (timeout, st.state, st.progress, st.num_peers, st.has_metadata))
            code = 1
            break
        if st.num_peers == 0 and now - asked_at >= 2:
            ses.dht_get_peers(ih)
            asked_at = now
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f peers %d down %d B/s"
                % (st.state, st.progress, st.num_peers, st.download_payload_rate))
        ses.wait_for_alert(50)
    peers.update(h)
    st = h.status()
    out("downloaded", st.total_payload_download)
    out("state", str(st.state))
    out("seconds", "%.2f" % (time.time() - t0))
    ses.remove_torrent(h)  # closes its files
    sys.exit(code)


def dht_announce(torrent, save_dir, seconds, nodes):
    """Leeches TORRENT (peers from the DHT only) and announces itself to the DHT once, then
    waits for peers. Prints `listening IP:PORT`, `announced SECS` (once a DHT lookup of its own
    lists its address for the torrent: AnnounceCheck), `peer ...` lines, at the end `downloaded BYTES` and `state`.
    Exit 0 when complete or on SIGTERM/SIGINT, 1 at SECONDS. Its re-announce interval is
    LT_DHT_ANNOUNCE_INTERVAL, 3600 s by default here: it announces (and looks up) once, so a
    peer it reports with source `incoming` connected to it."""
    t0 = time.time()
    stop = stop_flag()
    bind_ip = os.environ.get("LT_BIND_IP") or "127.0.0.1"
    interval = int(os.environ.get("LT_DHT_ANNOUNCE_INTERVAL") or 3600)
    ses = lt.session(dht_settings(bind_ip, interval))
    wait_listening(ses, t0, "dht-announce")
    out("listening %s:%d" % (bind_ip, ses.listen_port()))
    wait_dht(ses, nodes, t0)
    ti = lt.torrent_info(torrent)
    if ti.priv():
        log(t0, "warning: the torrent is private; libtorrent does not announce it to the DHT")
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = save_dir
    params.trackers = []
    params.flags |= lt.torrent_flags.disable_pex
    params.flags &= ~lt.torrent_flags.disable_dht
    h = ses.add_torrent(params)
    log(t0, "added %s" % ti.info_hashes().v1)
    check = AnnounceCheck(ses, ti.info_hashes().v1, (bind_ip, ses.listen_port()))
    peers = Peers()
    deadline = t0 + seconds
    forced = False
    last_report = 0.0
    code = 0
    while not stop:
        now = time.time()
        st = h.status()
        for a in ses.pop_alerts():
            if not quiet(a):
                log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
            if check.alert(a):
                out("announced", "%.2f" % (time.time() - t0))
            elif isinstance(a, lt.torrent_error_alert):
                code = 1
        if code:
            break
        if not forced and st.state not in CHECKING:
            h.force_dht_announce()
            forced = True
        if forced:
            check.tick()
        peers.update(h)
        if st.state in DONE_STATES and st.progress >= 1.0:
            break
        if now >= deadline:
            log(t0, "time is up after %ss: state %s progress %.4f" % (seconds, st.state, st.progress))
            code = 1
            break
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f peers %d down %d B/s"
                % (st.state, st.progress, st.num_peers, st.download_payload_rate))
        ses.wait_for_alert(50)
    if stop:
        log(t0, "stopping: " + stop[0])
    peers.update(h)
    st = h.status()
    out("downloaded", st.total_payload_download)
    out("state", str(st.state))
    out("seconds", "%.2f" % (time.time() - t0))
    ses.remove_torrent(h)
    sys.exit(code)


USAGE = ("usage: lt_tool.py dht-swarm N SECONDS [--ips] | dht-leech MAGNET SAVE_DIR TIMEOUT "
         "NODE... | dht-announce TORRENT SAVE_DIR SECONDS NODE...\n")


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "dht-swarm" and len(args) in (2, 3) and args[0].isdigit() and int(args[0]) >= 2 \
            and (len(args) == 2 or args[2] == "--ips"):
        dht_swarm(int(args[0]), positive(args[1], cmd), len(args) == 3)
    elif cmd == "dht-leech" and len(args) >= 4:
        dht_leech(args[0], args[1], positive(args[2], cmd), parse_nodes(args[3:]))
    elif cmd == "dht-announce" and len(args) >= 4:
        dht_announce(args[0], args[1], positive(args[2], cmd), parse_nodes(args[3:]))
    else:
        sys.stderr.write(USAGE)
        sys.exit(2)
