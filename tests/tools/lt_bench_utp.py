#!/usr/bin/python3
"""libtorrent seed and leechers for benches/utp.rs (Debian python3-libtorrent), loopback only.

  lt_bench_utp.py seed TORRENT SAVE_DIR utp|tcp [hp] [TIMEOUT]
      seed TORRENT's data from SAVE_DIR (checked first) over that transport only (utp: incoming
      and outgoing TCP off; tcp: uTP off), default settings, or with "hp" libtorrent's
      high_performance_seed preset (plus unlimited unchoke slots); listens on 127.0.0.1 (random
      port), dials nobody; prints "listening PORT" then "ready INFOHASH" once seeding, then runs
      until SIGTERM/SIGINT (exit 0) or TIMEOUT seconds (default 3600; exit 1)
  lt_bench_utp.py leech TORRENT HOST:PORT utp|tcp N TIMEOUT STALL WORK_DIR
      N libtorrent sessions in this one process, default settings but for the transport (as for
      seed), session i listening on and dialling from 127.0.0.(i+2), each downloading the whole
      torrent into WORK_DIR/i from the one peer HOST:PORT (connect_peer; again every 5 s while it
      has no peer). A session whose payload does not grow for STALL seconds ends "stalled"; one
      not done TIMEOUT seconds after the start ends "timeout". Prints one line per session,
        "session I IP RESULT bytes B seconds S max_peers P"   (RESULT done|stalled|timeout|error;
              seconds from its first dial to its end; P the most peers it had at once: 1, the seed,
              as peer exchange is off),
      then "elapsed S" (first dial of any session to the last end), "bytes B" (all sessions'
      payload), "max_peers P" (the most of any session), "result ok|stalled|timeout|error"
      (the worst), "utp NAME=VALUE ..." (the sessions' uTP counters summed: packet loss,
      timeouts, resends...) and "cpu S" (this process's user + system CPU seconds, all
      sessions' threads). Exit 0 if all done, 1
      otherwise, 2 on bad arguments. The downloaded data is deleted at the end.
      LT_BENCH_LEECH_SOCKBUF=BYTES sets the leechers' socket buffers (see leech());
      LT_BENCH_LINGER=SECONDS keeps the sessions connected that long after the "cpu" line.
  LT_BENCH_SETTINGS=name=value,... adds libtorrent settings to every session (experiments).

DHT, LSD, UPnP, NAT-PMP off; nothing but loopback addresses is listened on or dialled. Progress
and errors go to stderr.
"""
import os
import shutil
import signal
import sys
import time

import libtorrent as lt

UTP_COUNTERS = ("utp_packet_loss", "utp_timeout", "utp_fast_retransmit", "utp_packet_resend",
                "utp_packets_in", "utp_packets_out", "utp_payload_pkts_in",
                "utp_redundant_pkts_in", "utp_invalid_pkts_in", "utp_samples_above_target",
                "utp_samples_below_target")


def log(t0, msg):
    sys.stderr.write("[lt-bench %.1fs] %s\n" % (time.time() - t0, msg))
    sys.stderr.flush()


def settings(ip, transport, hp=False):
    base = dict(lt.high_performance_seed()) if hp else {}
    cats = lt.alert.category_t
    base.update({
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_ip_notifier": False,
        "listen_interfaces": "%s:0" % ip,
        "outgoing_interfaces": ip,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": cats.status_notification | cats.error_notification,
    })
    if transport == "utp":
        base.update({"enable_outgoing_tcp": False, "enable_incoming_tcp": False,
                     "enable_outgoing_utp": True, "enable_incoming_utp": True})
    elif transport == "tcp":
        base.update({"enable_outgoing_utp": False, "enable_incoming_utp": False,
                     "enable_outgoing_tcp": True, "enable_incoming_tcp": True})
    else:
        raise SystemExit(2)
    if hp:
        base.update({"unchoke_slots_limit": -1, "connections_limit": 20000})
    # LT_BENCH_SETTINGS=name=value,...: extra integer/boolean settings, for experiments.
    for kv in filter(None, (os.environ.get("LT_BENCH_SETTINGS") or "").split(",")):
        k, v = kv.split("=", 1)
        base[k] = {"true": True, "false": False}.get(v.lower(), None)
        if base[k] is None:
            base[k] = int(v)
    return base


def drain(ses, t0, tag):
    """Logs pending alerts; returns the first torrent error, or None."""
    error = None
    for a in ses.pop_alerts():
        if isinstance(a, lt.torrent_error_alert) and error is None:
            error = a.message()
        if isinstance(a, (lt.torrent_error_alert, lt.peer_error_alert)) or "error" in type(a).__name__:
            log(t0, "%s alert %s: %s" % (tag, type(a).__name__, a.message()))
    return error


def seed(torrent, save_dir, transport, hp, timeout):
    t0 = time.time()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    ses = lt.session(settings("127.0.0.1", transport, hp))
    deadline = t0 + 30
    while not ses.is_listening() or ses.listen_port() == 0:
        if time.time() >= deadline:
            log(t0, "not listening after 30 s")
            sys.exit(1)
        drain(ses, t0, "seed")
        time.sleep(0.05)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_dir
    h = ses.add_torrent(params)
    print("listening", ses.listen_port())
    sys.stdout.flush()
    deadline = t0 + 120
    while True:
        st = h.status()
        if st.state == lt.torrent_status.seeding:
            break
        if drain(ses, t0, "seed") is not None or time.time() >= deadline or stop:
            log(t0, "not seeding: state %s progress %.4f" % (st.state, st.progress))
            sys.exit(1)
        if st.state not in (lt.torrent_status.checking_files,
                            lt.torrent_status.checking_resume_data) and st.progress < 1.0:
            log(t0, "data incomplete: progress %.4f" % st.progress)
            sys.exit(1)
        ses.wait_for_alert(100)
    print("ready", str(h.info_hash()))
    sys.stdout.flush()
    deadline = t0 + timeout
    while not stop:
        if time.time() >= deadline:
            sys.exit(1)
        drain(ses, t0, "seed")
        ses.wait_for_alert(200)


def leech(torrent, peer, transport, n, timeout, stall, work_dir):
    t0 = time.time()
    # LT_BENCH_LEECH_SOCKBUF=BYTES: the leechers' socket buffers (send_socket_buffer_size and
    # recv_socket_buffer_size; 0 or unset: libtorrent's default, the OS's). On loopback a
    # leecher's UDP socket with the default 208 KiB overflows (RcvbufErrors) and libtorrent's uTP
    # falls to a few MB/s in about half the runs, whichever seed it talks to.
    sockbuf = int(os.environ.get("LT_BENCH_LEECH_SOCKBUF") or 0)
    host, port = peer.rsplit(":", 1)
    port = int(port)
    ti = lt.torrent_info(torrent)
    total = ti.total_size()
    sessions = []
    for i in range(n):
        ip = "127.0.0.%d" % (i + 2)
        st = settings(ip, transport)
        if sockbuf > 0:
            st.update({"send_socket_buffer_size": sockbuf, "recv_socket_buffer_size": sockbuf})
        ses = lt.session(st)
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(torrent)
        params.save_path = os.path.join(work_dir, str(i))
        # No peer exchange: the seed may list the other leechers (uringseed does, at once), and
        # leechers trading pieces among themselves would count as the seed's throughput.
        params.flags |= lt.torrent_flags.disable_pex
        h = ses.add_torrent(params)
        sessions.append({"i": i, "ip": ip, "ses": ses, "h": h, "dial": None, "first": None,
                         "end": None, "result": None, "bytes": 0, "grew": None,
                         "max_peers": 0})
    deadline = t0 + timeout
    last_report = 0.0
    checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
    done_states = (lt.torrent_status.seeding, lt.torrent_status.finished)
    while any(s["result"] is None for s in sessions):
        now = time.time()
        for s in sessions:
            if s["result"] is not None:
                continue
            st = s["h"].status()
            tag = "session %d" % s["i"]
            s["max_peers"] = max(s["max_peers"], st.num_peers)
            if st.total_payload_download > s["bytes"]:
                s["bytes"] = st.total_payload_download
                s["grew"] = now
            if st.state in done_states and st.progress >= 1.0:
                s["result"], s["end"] = "done", now
                continue
            if drain(s["ses"], t0, tag) is not None:
                s["result"], s["end"] = "error", now
                continue
            if now >= deadline:
                s["result"], s["end"] = "timeout", now
                continue
            if s["grew"] is not None and now - s["grew"] > stall:
                log(t0, "%s stalled: no payload for %.0f s at %d of %d bytes, peers %d"
                    % (tag, stall, s["bytes"], total, st.num_peers))
                s["result"], s["end"] = "stalled", now
                continue
            if st.state not in checking and st.num_peers == 0 and (
                    s["first"] is None or now - s["first"] > 5):
                if s["dial"] is None:
                    s["dial"] = now
                    s["grew"] = now  # the stall clock starts at the first dial
                s["first"] = now
                s["h"].connect_peer((host, port))
                log(t0, "%s (%s) connect_peer %s:%d over %s" % (tag, s["ip"], host, port, transport))
        if now - last_report >= 2:
            last_report = now
            log(t0, " ".join("%d:%.3f@%dMB/s" % (s["i"], s["bytes"] / max(total, 1),
                                                  s["h"].status().download_payload_rate // 1000000)
                             for s in sessions))
        time.sleep(0.05)
    counters = dict.fromkeys(UTP_COUNTERS, 0)
    for s in sessions:
        s["bytes"] = s["h"].status().total_payload_download
        s["ses"].post_session_stats()
        end = time.time() + 5
        got = False
        while not got and time.time() < end:
            s["ses"].wait_for_alert(200)
            for a in s["ses"].pop_alerts():
                if isinstance(a, lt.session_stats_alert):
                    for k in UTP_COUNTERS:
                        counters[k] += a.values.get("utp." + k, 0)
                    got = True
    dials = [s["dial"] for s in sessions if s["dial"] is not None]
    start = min(dials) if dials else t0
    for s in sessions:
        print("session %d %s %s bytes %d seconds %.3f max_peers %d"
              % (s["i"], s["ip"], s["result"], s["bytes"], s["end"] - (s["dial"] or t0),
                 s["max_peers"]))
    print("elapsed %.3f" % (max(s["end"] for s in sessions) - start))
    print("bytes %d" % sum(s["bytes"] for s in sessions))
    print("max_peers %d" % max(s["max_peers"] for s in sessions))
    worst = "ok"
    for r in ("timeout", "stalled", "error"):
        if any(s["result"] == r for s in sessions):
            worst = r
    print("result", worst)
    print("utp", " ".join("%s=%d" % (k, v) for k, v in counters.items()))
    cpu = os.times()
    print("cpu %.3f" % (cpu.user + cpu.system))
    sys.stdout.flush()
    # LT_BENCH_LINGER=SECONDS: keep the sessions (and their connections) that long before closing
    # them, for the seed's counters to be read while they are still connected.
    time.sleep(float(os.environ.get("LT_BENCH_LINGER") or 0))
    for s in sessions:
        s["ses"].remove_torrent(s["h"])
    del sessions
    shutil.rmtree(work_dir, ignore_errors=True)
    sys.exit(0 if worst == "ok" else 1)


def main(argv):
    if len(argv) >= 4 and argv[0] == "seed":
        rest = argv[4:]
        hp = bool(rest) and rest[0] == "hp"
        if hp:
            rest = rest[1:]
        timeout = float(rest[0]) if rest else 3600.0
        seed(argv[1], argv[2], argv[3], hp, timeout)
    elif len(argv) == 8 and argv[0] == "leech":
        leech(argv[1], argv[2], argv[3], int(argv[4]), float(argv[5]), float(argv[6]), argv[7])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
