#!/usr/bin/env python3
"""libtorrent's side of benches/many_torrents.rs: the same torrents, the same data.

usage: lt_many.py TORRENT_LIST DATA_DIR WORK_DIR

Runs itself twice as child processes (each its own RSS):
  prepare: one session adds every torrent, waits until all are seeding (a full check), saves
           each one's resume data under WORK_DIR, prints the time and RSS;
  restart: a fresh session adds every torrent with its resume data, prints the time from the
           first add to all seeding and the RSS then (and before adding: the empty session).
Every wait is bounded (600 s)."""

import os
import subprocess
import sys
import time

import libtorrent as lt

LIMIT = 600


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def session():
    cat = lt.alert.category_t
    return lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": cat.error_notification | cat.storage_notification | cat.status_notification,
        "alert_queue_size": 1000000,
        # As many torrents active as there are (libtorrent's default queues all but a few).
        "active_downloads": -1,
        "active_seeds": -1,
        "active_limit": -1,
        "active_checking": 2,
    })


def wait_all_seeding(s, n, t0):
    """Seconds from t0 until all n torrents are seeding, or None."""
    seeding = lt.torrent_status.states.seeding
    while time.monotonic() - t0 < LIMIT:
        s.pop_alerts()
        if len(s.get_torrents()) >= n and not s.get_torrent_status(lambda st: st.state != seeding, 0):
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def prepare(paths, data, work):
    s = session()
    t0 = time.monotonic()
    for p in paths:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(p)
        atp.save_path = data
        # Neither auto-managed nor paused: libtorrent would otherwise start (and check) a few at
        # a time, one more per auto-manage tick; all of them start at once, as uringseed's do.
        atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        s.async_add_torrent(atp)
    took = wait_all_seeding(s, len(paths), t0)
    handles = s.get_torrents()
    for h in handles:
        h.save_resume_data(lt.torrent_handle.save_info_dict)
    saved = 0
    while saved < len(handles) and time.monotonic() - t0 < LIMIT:
        s.wait_for_alert(1000)
        for a in s.pop_alerts():
            if isinstance(a, lt.save_resume_data_alert):
                name = str(a.params.info_hashes.v1) + ".resume"
                with open(os.path.join(work, name), "wb") as f:
                    f.write(lt.write_resume_data_buf(a.params))
                saved += 1
    print(f"libtorrent {lt.__version__} first add (full check): all seeding "
          f"{'NOT within %d s' % LIMIT if took is None else '%.2f s' % took}, RSS {rss_kib()} KiB; "
          f"{saved} resume files")


def restart(n, data, work):
    s = session()
    empty = rss_kib()
    files = [os.path.join(work, f) for f in os.listdir(work) if f.endswith(".resume")]
    if len(files) < n:
        sys.exit(f"only {len(files)} of {n} torrents have resume data")
    t0 = time.monotonic()
    for path in files:
        with open(path, "rb") as f:
            atp = lt.read_resume_data(f.read())
        atp.save_path = data
        atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        s.async_add_torrent(atp)
    took = wait_all_seeding(s, len(files), t0)
    print(f"libtorrent restart (resume data, {len(files)} of {n}): all seeding "
          f"{'NOT within %d s' % LIMIT if took is None else '%.2f s' % took}, RSS {rss_kib()} KiB "
          f"(empty session {empty} KiB)")


def main():
    if len(sys.argv) == 5:
        mode, listing, data, work = sys.argv[1:]
        paths = open(listing).read().split()
        (prepare(paths, data, work) if mode == "prepare" else restart(len(paths), data, work))
        return
    listing, data, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    for mode in ("prepare", "restart"):
        out = subprocess.run([sys.executable, __file__, mode, listing, data, work],
                             capture_output=True, text=True, timeout=2 * LIMIT + 60)
        sys.stdout.write(out.stdout)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            sys.exit(out.returncode)


if __name__ == "__main__":
    main()
