#!/usr/bin/python3
"""libtorrent helper for uringseed's tests (Debian python3-libtorrent).

  lt_tool.py create PATH OUT [v1|hybrid]   make a torrent of PATH with libtorrent; print its v1 info-hash
  lt_tool.py info TORRENT                  print the info-hash, name, web seeds and piece hashes
                                           libtorrent reads
  lt_tool.py download TORRENT SAVE_DIR HOST:PORT TIMEOUT [EXPECT_PIECES]
                                           download from one peer; print state, bytes, pieces held
                                           (env LT_ENCRYPTION=rc4|plaintext|both requires MSE with
                                           that payload level; LT_DOWNLOAD_RATE=BYTES/S caps the download rate, also
                                           from loopback peers; env LT_BIND_IP=127.0.0.N listens on
                                           and dials from that address instead of 127.0.0.1)
  lt_tool.py recheck TORRENT SAVE_DIR       time libtorrent's full check of the data (prints seconds)
  lt_tool.py rehash TORRENT PATH           hash PATH's data with libtorrent at TORRENT's piece length,
                                           print those piece hashes, then add TORRENT to a session over
                                           the data and print its state after a full check
  lt_tool.py download TORRENT SAVE_DIR HOST:PORT TIMEOUT
                                           download TORRENT into SAVE_DIR from the one peer HOST:PORT
                                           (dialled with connect_peer, TCP only); print "state ...",
                                           "downloaded BYTES" (payload) and "seconds ..." once it is
                                           finished or seeding with progress 1.0; exit 1 on timeout
                                           (TIMEOUT seconds) or a torrent error, 2 on bad arguments
  lt_tool.py tracker_download TORRENT SAVE_DIR TIMEOUT
                                           download TORRENT into SAVE_DIR from peers found ONLY through
                                           the torrent's own trackers (HTTP or UDP, every tier; no peer
                                           is added by hand); prints "port" (its listen port) first,
                                           then "state", "downloaded", "seconds" and "have" like
                                           download; exit 1 on timeout or a torrent error, 2 on bad
                                           arguments (LT_ENCRYPTION and LT_DOWNLOAD_RATE as for
                                           download; LT_LINGER_SECS=N stays N seconds in the swarm
                                           as a seed once done, SIGTERM ending it early)
  lt_tool.py seed TORRENT SAVE_DIR [TRACKER_URL|-] [TIMEOUT]
                                           seed TORRENT's data from SAVE_DIR (checked first), announce
                                           to the torrent's trackers plus TRACKER_URL ("-": none), and
                                           connect out to the peers the trackers return; prints
                                           "listening PORT" then "ready INFOHASH" once seeding, then
                                           runs until SIGTERM/SIGINT (announces stopped, exit 0) or
                                           TIMEOUT seconds (default 600; exit 1); exit 1 if the data
                                           is incomplete (env LT_UPLOAD_RATE=BYTES/S caps its upload,
                                           also to loopback peers; LT_DHT_NODES=IP:PORT,... turns the
                                           DHT on with those loopback nodes only, announces the
                                           torrent there and prints "dht_announced SECS" once a
                                           lookup of its own lists it)
  lt_tool.py magnet-info MAGNET            print the infohash, name, trackers and peers libtorrent's
                                           parse_magnet_uri reads from MAGNET
  lt_tool.py magnet-download MAGNET SAVE_DIR PEER|- TIMEOUT
                                           download given only MAGNET: peers from its trackers, or by
                                           dialling PEER (HOST:PORT); prints metadata_seconds, then
                                           metadata_bytes, files, infohash, state, downloaded, seconds
                                           (LT_STOP_AT_METADATA=1 stops once the metadata is in)
  lt_tool.py pex-leech TORRENT SAVE_DIR PEER TIMEOUT
                                           leech knowing only PEER, peer exchange on; prints
                                           "listening IP:PORT", "peer IP:PORT source=S down=N at=T"
                                           for each peer it talked to, then state, downloaded
                                           (LT_BIND_IP, LT_DOWNLOAD_RATE as for download;
                                           LT_PEX_ON_PRIVATE=1 keeps ut_pex on for a private torrent)
                                           magnet-info, magnet-download and pex-leech live in lt_magnet.py
  lt_tool.py dht-swarm N SECONDS [--ips]   N libtorrent DHT nodes on loopback (127.0.0.1, or with
                                           --ips 127.0.0.2, .3, ...) wired to each other; prints
                                           "node IP:PORT" each and "ready", then "announced INFOHASH
                                           IP:PORT node=NODE" and "get_peers INFOHASH node=NODE" for
                                           every such query a node receives
  lt_tool.py dht-leech MAGNET SAVE_DIR TIMEOUT NODE...
                                           magnet-only leecher whose only peers come from its own DHT
                                           lookups (it never announces); prints found/peer lines,
                                           found_seconds, metadata_seconds, downloaded, state, seconds
  lt_tool.py dht-announce TORRENT SAVE_DIR SECONDS NODE...
                                           leecher that announces itself to the DHT once and waits to
                                           be connected to; prints listening, announced, peer lines,
                                           downloaded, state, seconds
                                           dht-swarm, dht-leech and dht-announce live in lt_dht.py
LT_TRANSPORT (download, tracker_download, seed): tcp (default) TCP only; utp uTP only, in and out,
its TCP listener shut down once listening (a TCP dial to its port is refused; prints
"tcp_listener closed PORT"); utp-in the same, dialling nobody (accepts incoming uTP only); both uTP and TCP (libtorrent's default, uTP tried first). download and
tracker_download end with "transports utp|tcp|tcp,utp|none": how its peer connections ran.
Output is one "key value" pair per line. DHT (unless named above), LSD, UPnP, NAT-PMP off; create/info/rehash do no
networking and do not listen; download listens on 127.0.0.1 (random port) only and dials only the
peer it is given; tracker_download and seed listen on 127.0.0.1 (random port) and talk only to the
trackers and the peers those return, announcing to every tracker of every tier. Their floor on
re-announces (min_announce_interval, 300 s by default) is lowered to 1 s, but libtorrent still
waits 30 s when a reply has no "min interval" (tracker.js sends interval 10 and none). Progress
and peer/tracker/error alerts go to stderr.
"""
import os
import signal
import sys
import time

import libtorrent as lt


def v1_hash(ti):
    return str(ti.info_hashes().v1)


def create(path, out, kind):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    flags = lt.create_torrent.v1_only if kind == "v1" else 0
    ct = lt.create_torrent(fs, 0, flags=flags)
    ct.add_tracker("http://127.0.0.1:1/announce")
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
    data = lt.bencode(ct.generate())
    with open(out, "wb") as f:
        f.write(data)
    print("infohash", v1_hash(lt.torrent_info(out)))


def info(torrent):
    ti = lt.torrent_info(torrent)
    print("infohash", v1_hash(ti))
    print("name", ti.name())
    for ws in ti.web_seeds():
        print("webseed", ws["url"])
    print("pieces", ti.num_pieces())
    for i in range(ti.num_pieces()):
        print("piece", i, ti.hash_for_piece(i).hex())


def session():
    return lt.session({
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "listen_interfaces": "",
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
    })


def rehash(torrent, path):
    ti = lt.torrent_info(torrent)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, ti.piece_length(), flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
    pieces = ct.generate()[b"info"][b"pieces"]
    for i in range(0, len(pieces), 20):
        print("lt_piece", i // 20, pieces[i:i + 20].hex())
    ses = session()
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = os.path.dirname(os.path.abspath(path))
    h = ses.add_torrent(params)
    deadline = time.time() + 60
    checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
    st = h.status()
    while time.time() < deadline and (st.state in checking or not st.has_metadata):
        time.sleep(0.1)
        st = h.status()
    print("state", str(st.state))
    print("num_pieces_have", st.num_pieces)
    print("infohash", v1_hash(ti))


def parse_peer(peer):
    host, sep, port = peer.rpartition(":")
    if not sep or not host or not port.isdigit():
        sys.stderr.write("lt_tool.py download: peer must be HOST:PORT, not %r\n" % peer)
        sys.exit(2)
    return host.strip("[]"), int(port)


def log(t0, msg):
    sys.stderr.write("[lt %.1fs] %s\n" % (time.time() - t0, msg))
    sys.stderr.flush()


def download(torrent, save_dir, peer, timeout, expect=None):
    """Downloads until complete, or with EXPECT until it holds that many pieces (for a seed that
    withholds bad pieces); then prints the indexes of the pieces it has as `have i,j,...`."""
    t0 = time.time()
    host, port = parse_peer(peer)
    cats = lt.alert.category_t
    # LT_BIND_IP: the loopback address (e.g. 127.0.0.3) to listen on and dial from.
    bind_ip = os.environ.get("LT_BIND_IP") or "127.0.0.1"
    settings = {
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False,
        "listen_interfaces": "%s:0" % bind_ip,
        "outgoing_interfaces": bind_ip,
        # Several peers (and other tests' clients) share 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        "alert_mask": cats.status_notification | cats.error_notification
                      | cats.peer_notification | cats.connect_notification,
    }
    # TCP only unless LT_TRANSPORT says otherwise (libtorrent would try uTP first).
    settings.update(transport_settings())
    settings.update(encryption_settings())
    # LT_DOWNLOAD_RATE: cap the download at this many bytes/s so that it lasts a while.
    rate = int(os.environ.get("LT_DOWNLOAD_RATE") or 0)
    if rate > 0:
        settings["download_rate_limit"] = rate
    ses = lt.session(settings)
    if rate > 0:
        # download_rate_limit is the global peer class's limit, and peers on loopback and other
        # local networks are in the local class only: limit that one too.
        pc = ses.get_peer_class(ses.local_peer_class_id)
        pc["download_limit"] = rate
        ses.set_peer_class(ses.local_peer_class_id, pc)
        log(t0, "download rate limited to %d B/s" % rate)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_dir
    close_tcp_listener(ses, t0)
    h = ses.add_torrent(params)
    deadline = t0 + timeout
    done_states = (lt.torrent_status.seeding, lt.torrent_status.finished)
    connected_at = None
    seen = Transports()
    last_report = 0.0
    st = h.status()
    while True:
        now = time.time()
        st = h.status()
        if st.state in done_states and st.progress >= 1.0:
            break
        if expect is not None and st.num_pieces >= expect:
            break
        if now >= deadline:
            log(t0, "timeout after %ss: state %s progress %.4f peers %d"
                % (timeout, st.state, st.progress, st.num_peers))
            print("state", str(st.state))
            print("downloaded", st.total_payload_download)
            sys.exit(1)
        checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
        # Dial once the initial check is over; again every 5 s while no peer is connected.
        if st.state not in checking and st.num_peers == 0 and (
                connected_at is None or now - connected_at > 5):
            h.connect_peer((host, port))
            connected_at = now
            log(t0, "connect_peer %s:%d" % (host, port))
        seen.note(h, t0)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_error_alert):
                log(t0, "torrent error: " + a.message())
                print("state", str(st.state))
                sys.exit(1)
            log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f peers %d down %d B/s"
                % (st.state, st.progress, st.num_peers, st.download_payload_rate))
        ses.wait_for_alert(100)
    print("state", str(st.state))
    print("downloaded", st.total_payload_download)
    print("seconds", "%.2f" % (time.time() - t0))
    print("have", ",".join(str(i) for i, b in enumerate(h.status().pieces) if b))
    seen.note(h, t0)
    seen.report()
    ses.remove_torrent(h)  # closes its files


# peer_info.flags bit utp_socket (libtorrent 2.0's peer_info.hpp; the bindings do not export it).
UTP_SOCKET = 1 << 17


def transport():
    """LT_TRANSPORT: tcp (default), utp, utp-in or both."""
    t = os.environ.get("LT_TRANSPORT") or "tcp"
    if t not in ("tcp", "utp", "utp-in", "both"):
        sys.stderr.write("lt_tool.py: LT_TRANSPORT must be tcp, utp, utp-in or both, not %r\n" % t)
        sys.exit(2)
    return t


def transport_settings():
    """LT_TRANSPORT=tcp (default): TCP only, in and out. utp: uTP only, in and out (its TCP
    listener is also closed once it listens: close_tcp_listener). utp-in: the same, but it dials
    nobody (outgoing uTP off too): a peer it downloads from must have connected to it over uTP.
    both: libtorrent's default, uTP and TCP (it tries uTP first)."""
    t = transport()
    return {
        "enable_outgoing_tcp": t in ("tcp", "both"), "enable_incoming_tcp": t in ("tcp", "both"),
        "enable_outgoing_utp": t in ("utp", "both"), "enable_incoming_utp": t != "tcp",
    }


def close_tcp_listener(ses, t0):
    """With LT_TRANSPORT=utp: shuts down the session's TCP listening socket, so that a TCP dial
    to its port is refused (like a peer whose firewall lets only UDP in). libtorrent with
    enable_incoming_tcp off still listens on TCP and resets each connection after accepting it,
    which a dialler sees as a connection that broke, not one that was refused. The UDP socket
    (uTP) on the same port stays. Prints "tcp_listener closed PORT"; exit 1 if none is found."""
    if transport() not in ("utp", "utp-in"):
        return
    import socket
    deadline = time.time() + 30
    while not ses.is_listening() or ses.listen_port() == 0:
        if time.time() >= deadline:
            log(t0, "not listening after 30 s")
            sys.exit(1)
        time.sleep(0.05)
    port = ses.listen_port()
    closed = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink("/proc/self/fd/%d" % fd).startswith("socket:"):
                continue
            sk = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if (sk.type == socket.SOCK_STREAM
                    and sk.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sk.getsockname()[1] == port):
                # shutdown() on a listening socket stops it listening (Linux): SYNs get a RST.
                sk.shutdown(socket.SHUT_RDWR)
                closed += 1
        except OSError:
            pass
        finally:
            sk.close()
    if not closed:
        log(t0, "no TCP listener found on port %d" % port)
        sys.exit(1)
    log(t0, "TCP listener on port %d shut down: reachable over uTP only" % port)
    print("tcp_listener closed", port)
    sys.stdout.flush()


class Transports:
    """The transport (tcp or utp) of every peer connection seen, for the final "transports"
    line (comma-separated, sorted; "none" if no peer was ever listed)."""

    def __init__(self):
        self.seen = set()

    def note(self, h, t0):
        for p in h.get_peer_info():
            # The flag is set from the start, while still connecting (a download from a
            # loopback peer may be over within one poll of this).
            kind = "utp" if p.flags & UTP_SOCKET else "tcp"
            key = (kind, p.ip)
            if key not in self.seen:
                self.seen.add(key)
                log(t0, "peer %s:%d over %s" % (p.ip[0], p.ip[1], kind))

    def report(self):
        print("transports", ",".join(sorted({k for k, _ in self.seen})) or "none")
        sys.stdout.flush()


def encryption_settings():
    """LT_ENCRYPTION=rc4|plaintext|both: Message Stream Encryption required in and out (no plain
    handshake at all), offering that payload level. Unset: libtorrent's defaults."""
    enc = os.environ.get("LT_ENCRYPTION")
    if not enc:
        return {}
    levels = {"rc4": lt.enc_level.rc4, "plaintext": lt.enc_level.plaintext,
              "both": lt.enc_level.both}
    return {
        "out_enc_policy": int(lt.enc_policy.forced),
        "in_enc_policy": int(lt.enc_policy.forced),
        "allowed_enc_level": int(levels[enc]),
        "prefer_rc4": enc == "rc4",
    }


def net_session():
    """A session that listens on 127.0.0.1 (random port), TCP only, and finds peers only through
    trackers or connect_peer: DHT, LSD, UPnP, NAT-PMP off (set before the session starts)."""
    cats = lt.alert.category_t
    # LT_HIGH_PERFORMANCE=1 (benchmarks): start from libtorrent's high_performance_seed preset.
    base = lt.high_performance_seed() if os.environ.get("LT_HIGH_PERFORMANCE") else {}
    base = dict(base)
    base.update({
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_ip_notifier": False,
        "listen_interfaces": "127.0.0.1:0",
        "outgoing_interfaces": "127.0.0.1",
        # Several peers (and other tests' clients) share 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        # libtorrent's floor on re-announces is 300 s by default (a reply without "min interval"
        # still gets 30 s).
        "min_announce_interval": 1,
        "announce_to_all_tiers": True, "announce_to_all_trackers": True,
        "alert_mask": cats.status_notification | cats.error_notification
                      | cats.peer_notification | cats.connect_notification
                      | cats.tracker_notification,
    })
    if os.environ.get("LT_HIGH_PERFORMANCE"):
        base.update({"unchoke_slots_limit": -1, "connections_limit": 20000})
    base.update(transport_settings())
    base.update(encryption_settings())
    if os.environ.get("LT_DHT_NODES"):
        # DHT on, for the loopback DHT of lt_dht.py only (no public routers; the nodes are
        # given to the session with add_dht_node once it listens: see seed).
        import lt_dht
        dht = lt_dht.dht_settings("127.0.0.1")
        for key in ("listen_interfaces", "outgoing_interfaces", "alert_mask"):
            del dht[key]
        base.update(dht)
        base["alert_mask"] |= cats.dht_notification | cats.dht_operation_notification
    return lt.session(base)


def log_alerts(ses, t0):
    """Logs every pending alert on stderr; returns the first torrent error message, or None."""
    error = None
    for a in ses.pop_alerts():
        if isinstance(a, lt.torrent_error_alert) and error is None:
            error = a.message()
        log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
    return error


def tracker_download(torrent, save_dir, timeout):
    """Downloads TORRENT from whatever peers its trackers return (no peer given by hand)."""
    t0 = time.time()
    ses = net_session()
    close_tcp_listener(ses, t0)
    print("port", ses.listen_port())
    sys.stdout.flush()
    rate = int(os.environ.get("LT_DOWNLOAD_RATE") or 0)
    if rate > 0:
        # As in download: the global and the local (loopback) peer class.
        ses.apply_settings({"download_rate_limit": rate})
        pc = ses.get_peer_class(ses.local_peer_class_id)
        pc["download_limit"] = rate
        ses.set_peer_class(ses.local_peer_class_id, pc)
        log(t0, "download rate limited to %d B/s" % rate)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_dir
    h = ses.add_torrent(params)
    log(t0, "trackers: " + " ".join(t["url"] for t in h.trackers()))
    deadline = t0 + timeout
    done_states = (lt.torrent_status.seeding, lt.torrent_status.finished)
    last_report = 0.0
    seen = Transports()
    while True:
        now = time.time()
        st = h.status()
        seen.note(h, t0)
        if st.state in done_states and st.progress >= 1.0:
            break
        error = log_alerts(ses, t0)
        if error is not None:
            log(t0, "torrent error: " + error)
            print("state", str(st.state))
            sys.exit(1)
        if now >= deadline:
            log(t0, "timeout after %ss: state %s progress %.4f peers %d; trackers: %s"
                % (timeout, st.state, st.progress, st.num_peers,
                   "; ".join("%s (verified %s)" % (t["url"], t["verified"]) for t in h.trackers())))
            print("state", str(st.state))
            print("downloaded", st.total_payload_download)
            sys.exit(1)
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f peers %d down %d B/s"
                % (st.state, st.progress, st.num_peers, st.download_payload_rate))
        ses.wait_for_alert(100)
    print("state", str(st.state))
    print("downloaded", st.total_payload_download)
    print("seconds", "%.2f" % (time.time() - t0))
    print("have", ",".join(str(i) for i, b in enumerate(h.status().pieces) if b))
    seen.report()
    # LT_LINGER_SECS: stay in the swarm as a seed that long first (SIGTERM ends it early).
    linger = float(os.environ.get("LT_LINGER_SECS") or 0)
    if linger > 0:
        sys.stdout.flush()
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        end = time.time() + linger
        while time.time() < end and not stop:
            log_alerts(ses, t0)
            ses.wait_for_alert(100)
    # Announce stopped (bounded by libtorrent's stop_tracker_timeout, 5 s) and close the files.
    ses.remove_torrent(h)
    del ses


def seed(torrent, save_dir, tracker_url, timeout):
    """Seeds TORRENT, announcing to its trackers (and TRACKER_URL) and dialling the peers they
    return, until SIGTERM/SIGINT (clean exit, stopped announced) or TIMEOUT (exit 1)."""
    t0 = time.time()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    ses = net_session()
    deadline = t0 + 30
    while not ses.is_listening() or ses.listen_port() == 0:
        if time.time() >= deadline:
            log(t0, "not listening after 30 s")
            sys.exit(1)
        log_alerts(ses, t0)
        time.sleep(0.05)
    close_tcp_listener(ses, t0)
    dht_nodes = None
    if os.environ.get("LT_DHT_NODES"):
        import lt_dht
        dht_nodes = lt_dht.env_nodes()
        lt_dht.wait_dht(ses, dht_nodes, t0)
    ti = lt.torrent_info(torrent)
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = save_dir
    if tracker_url not in (None, "", "-"):
        params.trackers = [tracker_url]
    h = ses.add_torrent(params)
    # LT_UPLOAD_RATE: cap the upload (bytes/s), for the global and the local (loopback) peer class.
    rate = int(os.environ.get("LT_UPLOAD_RATE") or 0)
    if rate > 0:
        ses.apply_settings({"upload_rate_limit": rate})
        pc = ses.get_peer_class(ses.local_peer_class_id)
        pc["upload_limit"] = rate
        ses.set_peer_class(ses.local_peer_class_id, pc)
        log(t0, "upload rate limited to %d B/s" % rate)
    print("listening", ses.listen_port())
    sys.stdout.flush()
    log(t0, "listening on 127.0.0.1:%d; trackers: %s"
        % (ses.listen_port(), " ".join(t["url"] for t in h.trackers())))
    # Wait for the data check (torrent_checked_alert); then it must be seeding.
    deadline = t0 + 60
    checked = False
    while True:
        st = h.status()
        if st.state == lt.torrent_status.seeding:
            break
        if time.time() >= deadline or checked:
            log(t0, "data is not complete: state %s progress %.4f" % (st.state, st.progress))
            sys.exit(1)
        for a in ses.pop_alerts():
            log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
        if checked:
            time.sleep(0.2)  # let the state settle
        else:
            ses.wait_for_alert(100)
    print("ready", v1_hash(ti))
    sys.stdout.flush()
    check = None
    if dht_nodes:
        h.force_dht_announce()
        check = lt_dht.AnnounceCheck(ses, ti.info_hashes().v1, ("127.0.0.1", ses.listen_port()))
    deadline = t0 + timeout
    last_report = 0.0
    while not stop:
        now = time.time()
        if now >= deadline:
            log(t0, "timeout after %ss" % timeout)
            sys.exit(1)
        if check is not None:
            check.tick()
        for a in ses.pop_alerts():
            if check is not None and check.alert(a):
                # A DHT lookup of its own lists it: the announce is in.
                print("dht_announced", "%.2f" % (time.time() - t0))
                sys.stdout.flush()
            if check is None or not lt_dht.quiet(a):
                log(t0, "alert %s: %s" % (type(a).__name__, a.message()))
        if now - last_report >= 5:
            last_report = now
            st = h.status()
            log(t0, "state %s peers %d uploaded %d" % (st.state, st.num_peers, st.total_payload_upload))
        ses.wait_for_alert(100)
    log(t0, "signal: stopping (announcing stopped)")
    ses.remove_torrent(h)
    # Let the stopped announces go out (libtorrent waits up to stop_tracker_timeout, 5 s, when
    # the session is destroyed).
    del h
    end = time.time() + 2
    while time.time() < end:
        log_alerts(ses, t0)
        ses.wait_for_alert(100)
    del ses


def recheck(torrent, save_dir):
    """Times libtorrent's own full check of TORRENT's data in SAVE_DIR (no network)."""
    ses = session()
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_dir
    t0 = time.time()
    h = ses.add_torrent(params)
    checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
    deadline = t0 + 600
    st = h.status()
    while time.time() < deadline and (st.state in checking or not st.has_metadata):
        time.sleep(0.01)
        st = h.status()
    print("seconds", "%.3f" % (time.time() - t0))
    print("num_pieces_have", st.num_pieces)


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree (lt_dht, lt_magnet)
    cmd = sys.argv[1]
    if cmd == "create":
        create(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "v1")
    elif cmd == "info":
        info(sys.argv[2])
    elif cmd == "recheck":
        recheck(sys.argv[2], sys.argv[3])
    elif cmd == "rehash":
        rehash(sys.argv[2], sys.argv[3])
    elif cmd == "download":
        if len(sys.argv) not in (6, 7):
            sys.stderr.write("usage: lt_tool.py download TORRENT SAVE_DIR HOST:PORT TIMEOUT [EXPECT_PIECES]\n")
            sys.exit(2)
        try:
            secs = float(sys.argv[5])
        except ValueError:
            secs = 0
        if not secs > 0:
            sys.stderr.write("lt_tool.py download: TIMEOUT must be a positive number\n")
            sys.exit(2)
        download(sys.argv[2], sys.argv[3], sys.argv[4], secs, int(sys.argv[6]) if len(sys.argv) == 7 else None)
    elif cmd == "tracker_download":
        if len(sys.argv) != 5:
            sys.stderr.write("usage: lt_tool.py tracker_download TORRENT SAVE_DIR TIMEOUT\n")
            sys.exit(2)
        try:
            secs = float(sys.argv[4])
        except ValueError:
            secs = 0
        if not secs > 0:
            sys.stderr.write("lt_tool.py tracker_download: TIMEOUT must be a positive number\n")
            sys.exit(2)
        tracker_download(sys.argv[2], sys.argv[3], secs)
    elif cmd == "seed":
        if len(sys.argv) not in (4, 5, 6):
            sys.stderr.write("usage: lt_tool.py seed TORRENT SAVE_DIR [TRACKER_URL|-] [TIMEOUT]\n")
            sys.exit(2)
        try:
            secs = float(sys.argv[5]) if len(sys.argv) == 6 else 600.0
        except ValueError:
            secs = 0
        if not secs > 0:
            sys.stderr.write("lt_tool.py seed: TIMEOUT must be a positive number\n")
            sys.exit(2)
        seed(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) >= 5 else None, secs)
    elif cmd in ("dht-swarm", "dht-leech", "dht-announce"):
        sys.dont_write_bytecode = True  # no __pycache__ in the source tree
        import lt_dht
        lt_dht.main(sys.argv[1:])
    elif cmd in ("magnet-info", "magnet-download", "pex-leech"):
        sys.dont_write_bytecode = True  # no __pycache__ in the source tree
        import lt_magnet
        lt_magnet.main(sys.argv[1:])
    else:
        sys.exit("unknown command " + cmd)
