#!/usr/bin/python3
"""Download a torrent with Debian's transmission-cli (Transmission 3.00) on loopback.

  transmission_get.py TORRENT OUT_DIR CONFIG_DIR PEER_PORT TIMEOUT_SECS

Writes CONFIG_DIR/settings.json *before* transmission-cli first starts: DHT, LPD (local peer
discovery), PEX, uTP, UPnP/NAT-PMP port forwarding and blocklists off; peer sockets bound to
127.0.0.1 and ::1; PEER_PORT (0: a free port picked here) for incoming peers; no speed limits;
unencrypted connections preferred (encrypted ones accepted); seed ratio limit 0, so the torrent
stops (and transmission-cli exits) as soon as the download is complete. Transmission announces
to the torrent's trackers (HTTP or UDP) with PEER_PORT.

Transmission 3.00 never dials a peer on a loopback address ("martian"), even one a tracker lists:
it downloads only from peers that connect to it (a seed that learns its address from the tracker
and connects out).

Prints "port PEER_PORT" on stdout once transmission-cli is started, then, on success,
"complete BYTES" and "seconds SECS". transmission-cli's output (its status line, de-duplicated,
and its log; message level 2, or $TRANSMISSION_MESSAGE_LEVEL: 3 = debug, lists peer connections)
goes to stderr with timestamps. With $TRANSMISSION_DEEP_LOG=FILE, transmission-cli's own stderr
(its log, plus libtransmission's peer-level log through TR_DEBUG_FD=2: handshakes, "Sending
Interested", choke/unchoke, blocks; about 300 KB for a 340 KB torrent) goes to FILE instead.

Exit status 0 when every file of the torrent is in OUT_DIR under its final name with the right
size (Transmission renames a "NAME.part" file only once all of its pieces are verified; zero-length
files may be missing, Transmission 3.00 does not create them) and transmission-cli said the torrent
is seeding or stopped by itself after that; 1 if transmission-cli exited or failed first; 124 on
timeout; 2 on bad arguments. transmission-cli is stopped by its PID (SIGTERM, SIGKILL 5 s later)
whenever it is still running at the end. Standard library only.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

T0 = time.time()


def log(msg):
    sys.stderr.write("[transmission %.1fs] %s\n" % (time.time() - T0, msg))
    sys.stderr.flush()


def usage(msg=None):
    if msg:
        sys.stderr.write("transmission_get.py: %s\n" % msg)
    sys.stderr.write("usage: transmission_get.py TORRENT OUT_DIR CONFIG_DIR PEER_PORT TIMEOUT_SECS\n")
    sys.exit(2)


def bdecode(data, i=0):
    """Minimal bencode decoder: returns (value, next index); byte strings stay bytes."""
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            v, i = bdecode(data, i)
            out[k] = v
        return out, i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise ValueError("bad bencode at byte %d" % i)


def torrent_files(path):
    """[(relative path, length)] of a v1 torrent, as they land under the download directory."""
    with open(path, "rb") as f:
        meta, _ = bdecode(f.read())
    info = meta[b"info"]
    name = info[b"name"].decode("utf-8", "replace")
    if b"files" not in info:
        return [(name, info[b"length"])]
    out = []
    for f in info[b"files"]:
        attr = f.get(b"attr", b"")
        if b"p" in attr:  # BEP 47 pad file: never written
            continue
        parts = [p.decode("utf-8", "replace") for p in f[b"path"]]
        out.append((os.path.join(name, *parts), f[b"length"]))
    return out


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_settings(config_dir, out_dir, port):
    settings = {
        # Nothing beyond loopback: no DHT, local peer discovery, PEX, uTP, UPnP/NAT-PMP.
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": False,
        "port-forwarding-enabled": False,
        "blocklist-enabled": False,
        "bind-address-ipv4": "127.0.0.1",
        "bind-address-ipv6": "::1",
        "peer-port": port,
        "peer-port-random-on-start": False,
        # 0: prefer plain connections, accept encrypted ones (uringseed does not speak MSE).
        "encryption": 0,
        "speed-limit-down-enabled": False,
        "speed-limit-up-enabled": False,
        "alt-speed-enabled": False,
        # Stop seeding (and so make transmission-cli exit) as soon as the download is complete.
        "ratio-limit-enabled": True,
        "ratio-limit": 0,
        "idle-seeding-limit-enabled": False,
        "download-dir": out_dir,
        "incomplete-dir-enabled": False,
        "rename-partial-files": True,
        "preallocation": 0,
        "download-queue-enabled": False,
        "seed-queue-enabled": False,
        "queue-stalled-enabled": False,
        "start-added-torrents": True,
        "script-torrent-done-enabled": False,
        "rpc-enabled": False,
        "watch-dir-enabled": False,
        "trash-original-torrent-files": False,
        "peer-limit-global": 200,
        "peer-limit-per-torrent": 50,
        "message-level": int(os.environ.get("TRANSMISSION_MESSAGE_LEVEL", "2")),
    }
    os.makedirs(config_dir, exist_ok=True)
    tmp = os.path.join(config_dir, "settings.json.tmp")
    with open(tmp, "w") as f:
        json.dump(settings, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(config_dir, "settings.json"))


def files_done(out_dir, files):
    """(True, bytes) if every non-empty file is in place with its size; zero-length files that
    exist must be empty."""
    total = 0
    for rel, length in files:
        try:
            size = os.path.getsize(os.path.join(out_dir, rel))
        except OSError:
            if length == 0:
                continue
            return False, total
        if size != length:
            return False, total
        total += size
    return True, total


def main():
    if len(sys.argv) != 6:
        usage()
    torrent, out_dir, config_dir, port_s, secs_s = sys.argv[1:]
    if not port_s.isdigit() or int(port_s) > 65535:
        usage("PEER_PORT must be 0..65535")
    try:
        secs = float(secs_s)
    except ValueError:
        secs = 0
    if not secs > 0:
        usage("TIMEOUT_SECS must be a positive number")
    try:
        files = torrent_files(torrent)
    except (OSError, ValueError, KeyError, IndexError) as e:
        usage("cannot read %s: %s" % (torrent, e))
    exe = None
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        if os.access(os.path.join(d, "transmission-cli"), os.X_OK):
            exe = os.path.join(d, "transmission-cli")
            break
    if exe is None:
        usage("transmission-cli not found (apt-get install transmission-cli)")

    out_dir = os.path.abspath(out_dir)
    config_dir = os.path.abspath(config_dir)
    os.makedirs(out_dir, exist_ok=True)
    port = int(port_s) or free_port()
    write_settings(config_dir, out_dir, port)

    cmd = [exe, "--config-dir", config_dir, "--download-dir", out_dir, "--port", str(port),
           "--no-downlimit", "--no-uplimit", "--no-portmap", "--no-blocklist",
           "--encryption-tolerated", os.path.abspath(torrent)]
    # Its status line goes to stdout with "\r" and no newline: without stdbuf -o0 it arrives in
    # 4 KiB bursts (or only at exit) through the pipe.
    for d in ("/usr/bin", "/bin"):
        if os.access(os.path.join(d, "stdbuf"), os.X_OK):
            cmd = [os.path.join(d, "stdbuf"), "-o0"] + cmd  # stdbuf execs it: same PID
            break
    log("running " + " ".join(cmd))
    # HOME: transmission-cli must not touch the user's own ~/.config/transmission.
    env = dict(os.environ, HOME=config_dir)
    stderr = subprocess.STDOUT
    deep = os.environ.get("TRANSMISSION_DEEP_LOG")
    if deep:
        # libtransmission writes its peer-level log (handshakes, interested, choke, blocks) to
        # stdout or stderr only (TR_DEBUG_FD=1 or 2): send its stderr, with its messages, to FILE.
        stderr = open(deep, "wb")
        env["TR_DEBUG_FD"] = "2"
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=stderr, env=env)
    if deep:
        stderr.close()
    print("port", port)
    sys.stdout.flush()

    state = {"seeding": False, "last": None}

    def reader():
        # The status line is rewritten with "\r" five times a second: log it only when it changes.
        buf = b""
        while True:
            chunk = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
            if not chunk:
                break
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for raw in parts:
                line = raw.decode("utf-8", "replace").rstrip()
                if not line:
                    continue
                if line.startswith("Seeding") or "Seeding," in line:
                    state["seeding"] = True
                # Drop the rates, which change every tick, when comparing status lines.
                key = re.sub(r"[0-9.]+ k[Bb]/s|[0-9.]+ kB/s", "", line)
                if key != state["last"]:
                    state["last"] = key
                    log(line)
        if buf.strip():
            log(buf.decode("utf-8", "replace").rstrip())

    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def stop(reason):
        if proc.poll() is None:
            log("stopping transmission-cli (pid %d): %s" % (proc.pid, reason))
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                log("still running 5 s after SIGTERM: SIGKILL")
                proc.kill()
                proc.wait()
        t.join(2)

    # Stop transmission-cli if this script is told to stop.
    def on_signal(signum, _frame):
        stop("signal %d" % signum)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    deadline = T0 + secs
    complete_at = None
    while True:
        done, total = files_done(out_dir, files)
        rc = proc.poll()
        if done and complete_at is None:
            complete_at = time.time()
            log("every file is in place (%d bytes)" % total)
        if done and (state["seeding"] or rc == 0):
            # Give it a moment to stop by itself (ratio limit 0) and announce; then stop it.
            end = min(time.time() + 10, deadline + 5)
            while proc.poll() is None and time.time() < end:
                time.sleep(0.1)
            stop("download complete")
            print("complete", total)
            print("seconds", "%.2f" % (complete_at - T0))
            return 0
        if rc is not None:
            t.join(2)
            log("transmission-cli exited with %d before the download was complete" % rc)
            return 1
        if time.time() >= deadline:
            stop("timeout after %ss" % secs_s)
            log("timeout: files in %s: %s" % (out_dir, sorted(
                os.path.relpath(os.path.join(d, f), out_dir)
                for d, _, fs in os.walk(out_dir) for f in fs)))
            return 124
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
