#!/usr/bin/python3
"""libtorrent downloads a torrent from its web seeds only (BEP 19 url-list), for uringseed's tests.

  lt_webseed.py TORRENT SAVE_DIR TIMEOUT

No peers: DHT, LSD, UPnP, NAT-PMP and PEX are off (set before the session starts), it listens on
127.0.0.1 only, dials nobody, and any trackers the torrent names are removed before it is added.
Its only source is the torrent's url-list. Prints "webseed URL" for each web seed, then once the
download is complete "state ...", "downloaded BYTES" (payload), "seconds ..."; exit 1 on timeout
or a torrent error, 2 on bad arguments. Progress and alerts go to stderr.
"""
import sys
import time

import libtorrent as lt

# The shared helpers of the libtorrent driver beside this script (the alert log).
from lt_tool import log, log_alerts


def main():
    if len(sys.argv) != 4 or not sys.argv[3].isdigit():
        sys.stderr.write(__doc__)
        sys.exit(2)
    torrent, save_dir, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.time()
    cats = lt.alert.category_t
    ses = lt.session({
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_ip_notifier": False,
        "listen_interfaces": "127.0.0.1:0", "outgoing_interfaces": "127.0.0.1",
        # Web seeds on loopback are what this test is about (libtorrent 2.0 refuses some
        # loopback web seed URLs when SSRF mitigation is on).
        "ssrf_mitigation": False,
        "alert_mask": cats.status_notification | cats.error_notification
                      | cats.peer_notification | cats.connect_notification,
    })
    ti = lt.torrent_info(torrent)
    for ws in ti.web_seeds():
        print("webseed", ws["url"])
    sys.stdout.flush()
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = save_dir
    params.trackers = []
    # Started at once (not queued or paused by the session's auto-management).
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    params.flags |= lt.torrent_flags.disable_pex
    h = ses.add_torrent(params)
    h.replace_trackers([])
    done_states = (lt.torrent_status.seeding, lt.torrent_status.finished)
    deadline = t0 + timeout
    last_report = 0.0
    while True:
        now = time.time()
        st = h.status()
        if st.state in done_states and st.progress >= 1.0:
            break
        if now >= deadline:
            log(t0, "timeout after %ss: state %s progress %.4f" % (timeout, st.state, st.progress))
            print("state", str(st.state))
            print("downloaded", st.total_payload_download)
            sys.exit(1)
        error = log_alerts(ses, t0)
        if error is not None:
            log(t0, "torrent error: " + error)
            print("state", str(st.state))
            sys.exit(1)
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f peers %d down %d B/s"
                % (st.state, st.progress, st.num_peers, st.download_payload_rate))
        ses.wait_for_alert(100)
    print("state", str(st.state))
    print("downloaded", st.total_payload_download)
    print("seconds", "%.2f" % (time.time() - t0))
    sys.stdout.flush()
    ses.remove_torrent(h)  # closes its files


if __name__ == "__main__":
    main()
