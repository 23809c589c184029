#!/usr/bin/python3
"""Swarm benchmark (issue 19): one seed and N libtorrent leechers on loopback, joined through a
local tracker, each leecher rate-limited like a home connection, the seed's upload capped.

  /usr/bin/python3 benches/swarm.py [--size MIB] [--leechers N] [--seed-rate B/S] [--up B/S]
        [--down B/S] [--configs NAME,...] [--piece-length BYTES] [--timeout SECS] [--bin PATH]
        [--out DIR]

Rates take a number of bytes per second or a unit: k, M (1000^n), KiB, MiB (1024^n). Configs
(default: all, in this order):
  uringseed-rr       `uringseed serve` as it ships (its round-robin choker)
  uringseed-super    the same with --super-seed
  uringseed-choker   the same with --choker NAME (NAME: the first value serve --help lists that
                     is not round robin; or give it: uringseed-choker=NAME)
  lt                 a libtorrent 2.0 session as the seed, default settings
  lt-super           the same with torrent_flags.super_seeding
A uringseed config whose flag `uringseed serve --help` does not list is reported
"skipped (serve does not accept --FLAG)" and the others still run.

Per config, in one run on the same data: a fresh tracker (tests/tools/tracker.js, npm
bittorrent-tracker, HTTP on 127.0.0.1) and a torrent announcing to it; the seed starts and
announces; then N leecher sessions (all in this process, each listening on its own 127.0.0.1
port, TCP only, DHT/LSD/UPnP/NAT-PMP/PEX off, upload and download capped, also for loopback
peers) join through the tracker and stay in the swarm as seeds once complete. Every 0.5 s it
samples each leecher's pieces and the seed's payload bytes uploaded (uringseed: its /metrics
`uringseed_uploaded_bytes_total{type="payload"}`; libtorrent: total_payload_upload).

Output (stdout, and DIR/results.md; DIR defaults to target/swarm-bench): one row per config with
the seed's upload until the first and until the last leecher completes (multiples of the torrent
size) and the times to those; DIR/samples.csv (every sample); DIR/swarm.png, pieces available in
the swarm over time (distinct pieces held by >= 1 leecher, solid, and by >= 2, dashed; one colour
per config), drawn with matplotlib when it imports, else as a bare PNG (no text; the colours are
printed). Every process it starts is stopped by PID at the end, on error and on Ctrl-C; every
wait is bounded. Nothing but 127.0.0.1 is listened on or dialled.
"""
import argparse
import os
import queue
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
import zlib

import libtorrent as lt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACKER_JS = os.path.join(ROOT, "tests", "tools", "tracker.js")
ALL_CONFIGS = ["uringseed-rr", "uringseed-super", "uringseed-choker", "lt", "lt-super"]
SAMPLE_SECS = 0.5
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
           (140, 86, 75), (23, 190, 207)]


def rate(text):
    m = re.fullmatch(r"\s*([0-9.]+)\s*(|k|M|G|KiB|MiB|GiB)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError("not a rate: %r" % text)
    mult = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
    return int(float(m.group(1)) * mult[m.group(2)])


def log(msg):
    sys.stderr.write("[swarm %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Proc:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, args, env=None):
        self.lines = queue.Queue()
        self.stderr = []
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, args=(self.p.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.p.stderr, False), daemon=True).start()

    def _read(self, f, out):
        for line in f:
            (self.lines.put if out else self.stderr.append)(line.rstrip("\n"))

    def wait_line(self, prefix, secs):
        """Stdout lines until one starting with PREFIX (returned with the ones before it)."""
        seen, end = [], time.time() + secs
        while time.time() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            seen.append(line)
            if line.startswith(prefix):
                return seen
        raise RuntimeError("%s: no %r line in %ss (exit %s); stderr: %s"
                           % (self.p.args[0], prefix, secs, self.p.poll(),
                              " | ".join(self.stderr[-5:])))

    def stop(self):
        """SIGTERM to this PID, SIGKILL after 10 s."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def lt_settings(extra):
    """Loopback-only session settings: DHT/LSD/UPnP/NAT-PMP off from the start, TCP only."""
    s = {
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_ip_notifier": False,
        "listen_interfaces": "127.0.0.1:0", "outgoing_interfaces": "127.0.0.1",
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True, "announce_to_all_tiers": True,
        "min_announce_interval": 1, "stop_tracker_timeout": 1,
        "aio_threads": 2, "hashing_threads": 1,
        "alert_mask": lt.alert.category_t.error_notification,
    }
    s.update(extra)
    return s


def limit_session(ses, up, down):
    """Caps for the global and for the local peer class (loopback peers are in the latter only),
    and loopback peers held to the unchoke slots like any other (libtorrent exempts them)."""
    ses.apply_settings({"upload_rate_limit": up, "download_rate_limit": down})
    pc = ses.get_peer_class(ses.local_peer_class_id)
    pc.update({"upload_limit": up, "download_limit": down, "ignore_unchoke_slots": False})
    ses.set_peer_class(ses.local_peer_class_id, pc)


def wait_listening(ses, secs=20):
    end = time.time() + secs
    while not ses.is_listening() or ses.listen_port() == 0:
        if time.time() >= end:
            raise RuntimeError("libtorrent session not listening after %ss" % secs)
        time.sleep(0.05)
    return ses.listen_port()


def make_torrent(data_file, out, tracker_url, piece_length):
    fs = lt.file_storage()
    lt.add_files(fs, data_file)
    ct = lt.create_torrent(fs, piece_length, flags=lt.create_torrent.v1_only)
    ct.add_tracker(tracker_url)
    lt.set_piece_hashes(ct, os.path.dirname(data_file))
    with open(out, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    return lt.torrent_info(out)


class Tracker:
    def __init__(self):
        self.proc = Proc(["node", TRACKER_JS, "0"])
        line = self.proc.wait_line("listening ", 20)[-1]
        self.http = int(re.search(r"http=(\d+)", line).group(1))
        self.url = "http://127.0.0.1:%d/announce" % self.http

    def wait_announce(self, info_hash, port, secs):
        """Until the tracker logs an announce of INFO_HASH from 127.0.0.1:PORT."""
        pat = re.compile(r"announce %s \S*:%d " % (info_hash, port))
        end = time.time() + secs
        while time.time() < end:
            if any(pat.search(l) for l in list(self.proc.stderr)):
                return
            time.sleep(0.1)
        raise RuntimeError("the seed (port %d) did not announce in %ss" % (port, secs))


class UringSeed:
    def __init__(self, binary, torrent, data_dir, work, seed_rate, flags):
        cfg = os.path.join(work, "seed.toml")
        state = os.path.join(work, "seed-state")
        with open(cfg, "w") as f:
            f.write('[server]\nstate_dir = "%s"\n[dht]\nenabled = false\n[utp]\nenabled = false\n'
                    '[api]\nenabled = false\n[hashing]\nresume = false\n'
                    # The local tracker's 10 s interval, as before the 300 s default floor.
                    '[tracker]\nmin_announce_interval_secs = 10\n' % state)
        env = dict(os.environ, URINGSEED_DHT_BOOTSTRAP="", XDG_STATE_HOME=state)
        self.proc = Proc([binary, "serve", "--config", cfg, "--torrent", torrent, "--data", data_dir,
                          "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                          "--upload-limit", str(seed_rate), "--log-level", "warn"] + flags, env)
        lines = self.proc.wait_line("ready: ", 120)
        self.port = next(int(l.rsplit(":", 1)[1]) for l in lines if l.startswith("listening: "))
        self.metrics = next(l.split(" ", 1)[1].strip() for l in lines if l.startswith("metrics: "))
        if not self.metrics.endswith("/metrics"):
            self.metrics += "/metrics"

    def uploaded(self):
        with urllib.request.urlopen(self.metrics, timeout=2) as r:
            text = r.read().decode()
        m = re.search(r'^uringseed_uploaded_bytes_total\{type="payload"\} (\S+)', text, re.M)
        return int(float(m.group(1))) if m else 0

    def stop(self):
        self.proc.stop()


class LtSeed:
    def __init__(self, ti, data_dir, seed_rate, super_seed):
        self.ses = lt.session(lt_settings({}))
        limit_session(self.ses, seed_rate, 0)
        self.port = wait_listening(self.ses)
        p = lt.add_torrent_params()
        p.ti = ti
        p.save_path = data_dir
        if super_seed:
            p.flags |= lt.torrent_flags.super_seeding
        self.h = self.ses.add_torrent(p)
        end = time.time() + 120
        while self.h.status().state != lt.torrent_status.seeding:
            if time.time() >= end:
                raise RuntimeError("libtorrent seed: data not complete after its check")
            self.ses.pop_alerts()
            time.sleep(0.1)
        if super_seed and not (self.h.flags() & lt.torrent_flags.super_seeding):
            raise RuntimeError("libtorrent seed: super_seeding did not stick")

    def uploaded(self):
        return self.h.status().total_payload_upload

    def stop(self):
        self.ses.remove_torrent(self.h)
        self.ses.pop_alerts()
        del self.h, self.ses


class Leechers:
    def __init__(self, ti, n, up, down, work):
        self.sessions, self.handles, self.dirs = [], [], []
        for i in range(n):
            ses = lt.session(lt_settings({}))
            limit_session(ses, up, down)
            wait_listening(ses)
            self.sessions.append(ses)
        for i, ses in enumerate(self.sessions):
            d = os.path.join(work, "leecher%d" % i)
            os.makedirs(d)
            p = lt.add_torrent_params()
            p.ti = ti
            p.save_path = d
            p.flags |= lt.torrent_flags.disable_pex
            self.handles.append(ses.add_torrent(p))
            self.dirs.append(d)

    def sample(self, num_pieces):
        """(pieces held by each leecher, per-piece count of leechers holding it, leecher upload)."""
        held, counts, up = [], [0] * num_pieces, 0
        for ses, h in zip(self.sessions, self.handles):
            ses.pop_alerts()
            st = h.status()
            if len(st.pieces) == num_pieces:
                bits, n = st.pieces, st.num_pieces
            else:  # libtorrent may leave a seed's bitfield empty
                bits, n = [st.is_seeding] * num_pieces, num_pieces if st.is_seeding else 0
            for i, b in enumerate(bits):
                if b:
                    counts[i] += 1
            held.append(n)
            up += st.total_payload_upload
        return held, counts, up

    def stop(self):
        for ses, h in zip(self.sessions, self.handles):
            ses.remove_torrent(h)
        self.handles = []
        while self.sessions:
            self.sessions.pop()  # the session's destructor waits for its threads
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def serve_help(binary):
    try:
        return subprocess.run([binary, "serve", "--help"], capture_output=True, text=True,
                              timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def uringseed_flags(name, help_text):
    """Serve flags for a uringseed config, or the reason it is skipped."""
    if name == "uringseed-rr":
        return [], None
    if name == "uringseed-super":
        return (["--super-seed"], None) if "--super-seed" in help_text else \
            (None, "skipped (serve does not accept --super-seed)")
    if "--choker" not in help_text:
        return None, "skipped (serve does not accept --choker)"
    choker = name.split("=", 1)[1] if "=" in name else None
    if choker is None:
        block = help_text[help_text.index("--choker"):].split("\n  -", 1)[0]
        m = re.search(r"possible values: ([^\]]+)\]", block)
        others = [v.strip() for v in m.group(1).split(",")] if m else []
        others = [v for v in others if v.replace("-", "").replace("_", "") not in ("roundrobin", "rr")]
        if not others:
            return None, "skipped (serve --help names no other choker; give uringseed-choker=NAME)"
        choker = others[0]
    return ["--choker", choker], None


def run_config(name, args, data_file, work, help_text):
    """One seed configuration; returns its result row (dict) and samples."""
    row = {"config": name, "status": "", "samples": []}
    flags = None
    if name.startswith("uringseed"):
        if not os.access(args.bin, os.X_OK):
            row["status"] = "skipped (no %s: cargo build --release)" % args.bin
            return row
        flags, skip = uringseed_flags(name, help_text)
        if skip:
            row["status"] = skip
            return row
        if flags:
            row["config"] = name.split("=")[0] + " (" + " ".join(flags) + ")"
    cdir = os.path.join(work, re.sub(r"[^A-Za-z0-9_-]", "_", name))
    os.makedirs(cdir)
    tracker = seed = leechers = None
    try:
        tracker = Tracker()
        torrent = os.path.join(cdir, "swarm.torrent")
        ti = make_torrent(data_file, torrent, tracker.url, args.piece_length)
        info_hash, size, num_pieces = str(ti.info_hashes().v1), ti.total_size(), ti.num_pieces()
        data_dir = os.path.dirname(data_file)
        if name.startswith("uringseed"):
            seed = UringSeed(args.bin, torrent, data_dir, cdir, args.seed_rate, flags)
        else:
            seed = LtSeed(ti, data_dir, args.seed_rate, name == "lt-super")
        tracker.wait_announce(info_hash, seed.port, 30)
        log("%s: seed on 127.0.0.1:%d announced; %d leechers join" % (name, seed.port, args.leechers))
        base = seed.uploaded()
        leechers = Leechers(ti, args.leechers, args.up, args.down, cdir)
        t0 = time.time()
        first = last = None
        next_log = 0
        while True:
            now = time.time() - t0
            held, counts, lup = leechers.sample(num_pieces)
            sup = seed.uploaded() - base
            done = sum(1 for h in held if h == num_pieces)
            s = {"t": now, "seed_up": sup, "leech_up": lup, "done": done,
                 "avail1": sum(1 for c in counts if c >= 1), "avail2": sum(1 for c in counts if c >= 2),
                 "min_avail": min(counts), "pieces_min": min(held), "pieces_max": max(held)}
            row["samples"].append(s)
            if first is None and done >= 1:
                first = (now, sup)
            if done == args.leechers:
                last = (now, sup)
                break
            if now >= args.timeout:
                break
            if now >= next_log:
                next_log = now + 10
                log("%s: %.0f s, done %d/%d, leecher pieces %d..%d of %d, swarm has %d (>=2: %d),"
                    " seed up %.2fx" % (name, now, done, args.leechers, min(held), max(held),
                                        num_pieces, s["avail1"], s["avail2"], sup / size))
            time.sleep(max(0.0, t0 + len(row["samples"]) * SAMPLE_SECS - time.time()))
        row.update(size=size, done=done, first=first, last=last,
                   seed_total=sup, leech_total=lup,
                   status="ok" if last else "timeout after %ds (%d/%d complete)"
                   % (args.timeout, done, args.leechers))
        log("%s: %s" % (name, row["status"]))
    except Exception as e:  # report the config as failed, run the others
        row["status"] = "error: %s" % e
        log("%s: %s" % (name, row["status"]))
    finally:
        for part in (leechers, seed, tracker and tracker.proc):
            if part is not None:
                try:
                    part.stop()
                except Exception as e:
                    log("%s: stopping: %s" % (name, e))
        shutil.rmtree(cdir, ignore_errors=True)
    return row


def table(rows):
    out = ["| seed | seed upload to 1st complete (x size) | to all complete (x size) "
           "| 1st complete s | all complete s | result |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("size"):
            f, l, sz = r["first"], r["last"], r["size"]
            out.append("| %s | %s | %s | %s | %s | %s |" % (
                r["config"], "%.2f" % (f[1] / sz) if f else "-", "%.2f" % (l[1] / sz) if l else "-",
                "%.1f" % f[0] if f else "-", "%.1f" % l[0] if l else "-", r["status"]))
        else:
            out.append("| %s | - | - | - | - | %s |" % (r["config"], r["status"]))
    return "\n".join(out)


def png_bare(path, series, width=900, height=500):
    """A PNG without text: axes and one polyline per series ((colour, dashed, [(x, y)], xmax, ymax))."""
    px = bytearray(b"\xff" * (width * height * 3))
    m = 40

    def put(x, y, c):
        if 0 <= x < width and 0 <= y < height:
            px[(y * width + x) * 3:(y * width + x) * 3 + 3] = bytes(c)

    def line(x0, y0, x1, y1, c, dashed=False):
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(n + 1):
            if not dashed or (k // 6) % 2 == 0:
                x, y = round(x0 + (x1 - x0) * k / n), round(y0 + (y1 - y0) * k / n)
                put(x, y, c), put(x, y + 1, c)

    line(m, m, m, height - m, (0, 0, 0))
    line(m, height - m, width - m, height - m, (0, 0, 0))
    for colour, dashed, pts, xmax, ymax in series:
        sc = [(m + round(x / xmax * (width - 2 * m)), height - m - round(y / ymax * (height - 2 * m)))
              for x, y in pts]
        for a, b in zip(sc, sc[1:]):
            line(a[0], a[1], b[0], b[1], colour, dashed)
    raw = b"".join(b"\x00" + bytes(px[y * width * 3:(y + 1) * width * 3]) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def plot(path, rows, title, num_pieces):
    rows = [r for r in rows if r["samples"]]
    if not rows:
        return "no plot: no samples"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        xmax = max(r["samples"][-1]["t"] for r in rows) or 1
        series, legend = [], []
        for i, r in enumerate(rows):
            c = COLOURS[i % len(COLOURS)]
            for key, dashed in (("avail1", False), ("avail2", True)):
                series.append((c, dashed, [(s["t"], s[key]) for s in r["samples"]], xmax, num_pieces))
            legend.append("%s rgb%s" % (r["config"], c))
        png_bare(path, series)
        return ("matplotlib missing: bare PNG %s (x 0..%.0f s, y 0..%d pieces; solid >=1 leecher, "
                "dashed >=2): %s" % (path, xmax, num_pieces, "; ".join(legend)))
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for i, r in enumerate(rows):
        c = tuple(v / 255 for v in COLOURS[i % len(COLOURS)])
        t = [s["t"] for s in r["samples"]]
        ax.plot(t, [s["avail1"] for s in r["samples"]], color=c, label=r["config"] + ": >=1 leecher")
        ax.plot(t, [s["avail2"] for s in r["samples"]], color=c, linestyle="--", label=r["config"] + ": >=2")
    ax.set_xlabel("seconds since the leechers joined")
    ax.set_ylabel("distinct pieces in the swarm (of %d)" % num_pieces)
    ax.set_ylim(0, num_pieces * 1.03)
    ax.set_title(textwrap.fill(title, 110), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return "plot: " + path


def on_sigterm(*_):
    raise KeyboardInterrupt  # the finally blocks stop what was started


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128, help="torrent size, MiB (default 128)")
    ap.add_argument("--leechers", type=int, default=6, help="leechers (default 6)")
    ap.add_argument("--seed-rate", type=rate, default=rate("8M"), help="seed upload cap (default 8M)")
    ap.add_argument("--up", type=rate, default=rate("2M"), help="leecher upload cap (default 2M)")
    ap.add_argument("--down", type=rate, default=rate("4M"), help="leecher download cap (default 4M)")
    ap.add_argument("--configs", default=",".join(ALL_CONFIGS),
                    help="comma-separated, of: " + ", ".join(ALL_CONFIGS))
    ap.add_argument("--piece-length", type=int, default=256 * 1024, help="bytes (default 256 KiB)")
    ap.add_argument("--timeout", type=int, default=0,
                    help="seconds per config (default: 5x the ideal time, at least 120)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "uringseed"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "swarm-bench"))
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(ROOT, "tests", "tools", "node_modules", "bittorrent-tracker")):
        ap.error("tests/tools/node_modules/bittorrent-tracker is missing: "
                 "(cd tests/tools && npm install --ignore-scripts)")
    signal.signal(signal.SIGTERM, on_sigterm)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c.split("=")[0] not in ALL_CONFIGS or ("=" in c and not c.startswith("uringseed-choker=")):
            ap.error("unknown config %r" % c)
    size = args.size * 1024 * 1024
    ideal = max(size * args.leechers / (args.seed_rate + args.leechers * args.up), size / args.down)
    if not args.timeout:
        args.timeout = max(120, int(5 * ideal))
    os.makedirs(args.out, exist_ok=True)
    params = ("%d MiB torrent (%d KiB pieces), %d leechers at %.1f MB/s up / %.1f MB/s down, "
              "seed capped at %.1f MB/s; ideal %.0f s; timeout %d s per config"
              % (args.size, args.piece_length // 1024, args.leechers, args.up / 1e6, args.down / 1e6,
                 args.seed_rate / 1e6, ideal, args.timeout))
    log(params)
    help_text = serve_help(args.bin) if os.access(args.bin, os.X_OK) else ""
    work = tempfile.mkdtemp(prefix="uringseed-swarm-")
    rows = []
    interrupted = False
    try:
        data_file = os.path.join(work, "swarm.bin")
        rng = random.Random(19)
        with open(data_file, "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 24)
                f.write(rng.randbytes(n))
                left -= n
        for c in configs:
            rows.append(run_config(c, args, data_file, work, help_text))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    num_pieces = (size + args.piece_length - 1) // args.piece_length
    md = table(rows)
    note = plot(os.path.join(args.out, "swarm.png"), rows, params, num_pieces)
    with open(os.path.join(args.out, "samples.csv"), "w") as f:
        keys = ["t", "seed_up", "leech_up", "done", "avail1", "avail2", "min_avail", "pieces_min",
                "pieces_max"]
        f.write("config," + ",".join(keys) + "\n")
        for r in rows:
            for s in r["samples"]:
                f.write(r["config"] + "," + ",".join(
                    ("%.2f" % s[k]) if k == "t" else str(s[k]) for k in keys) + "\n")
    text = "%s\n%s\n\n%s\n\n%s\n" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), params, md, note)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
