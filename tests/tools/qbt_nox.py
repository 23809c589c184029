#!/usr/bin/python3
"""Download one torrent from one given peer with a real qBittorrent (qbittorrent-nox).

  qbt_nox.py TORRENT SAVE_DIR HOST:PORT TIMEOUT_SECS [default|tcp]

Starts qbittorrent-nox (Debian bookworm: 4.5.2) with a fresh profile in a temporary directory
(HOME points there too), its legal notice accepted in the config it writes before the first
start, its WebUI on a free 127.0.0.1 port with authentication bypassed for localhost, and
qBittorrent's default BitTorrent settings except: listening on 127.0.0.1 (interface lo) on a free
port; DHT, local peer discovery, peer exchange and UPnP/NAT-PMP off (so it talks to nobody but
the peer it is given); and, with mode `tcp`, TCP only (Session\\BTProtocol=TCP). Mode `default`
(the default) keeps qBittorrent's "TCP and uTP" (libtorrent then dials uTP first). The settings
are read back through the WebUI API before the torrent is added (exit 1 if one is not as set).

It adds TORRENT (save path SAVE_DIR), gives it HOST:PORT with torrents/addPeers, again every 2 s
until a seed is connected, and waits until the torrent is complete. Prints one JSON line:

  {"ok": true, "mode": "default", "version": "v4.5.2", "startup_seconds": 0.4,
   "connect_seconds": 0.6, "seconds": 1.9, "size": N, "downloaded": N,
   "connections": ["\u03bcTP"], "transports": ["utp"], "state": "stalledUP"}

`seconds` runs from torrents/add to complete (qBittorrent's start-up excluded);
`connect_seconds` to the first connected seed; `connections` is the connection type of every
peer seen (qBittorrent's own words: "\u03bcTP" with a Greek mu, "BT" = TCP), `transports` the
same as "utp"/"tcp"; `downloaded` is qBittorrent's
session payload download. Exit 0 when complete, 1 on timeout or failure (the JSON then has
"ok": false and "error"; the tail of qBittorrent's log goes to stderr), 2 on bad arguments.
Every wait is bounded; it stops only the qbittorrent-nox it started, by PID (app/shutdown, then
SIGTERM, then SIGKILL). QBT_KEEP_PROFILE=1 keeps the profile directory (its path on stderr).
Standard library only; run with /usr/bin/python3.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# qBittorrent's peer "connection" words (libtorrent's): uTP is written with a Greek mu.
TRANSPORTS = {"\u03bcTP": "utp", "uTP": "utp", "BT": "tcp"}
DONE_STATES = ("uploading", "stalledUP", "pausedUP", "queuedUP", "forcedUP", "checkingUP")


def log(t0, msg):
    sys.stderr.write("[qbt %.1fs] %s\n" % (time.time() - t0, msg))
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(profile, webui_port, bt_port, mode):
    conf_dir = os.path.join(profile, "qBittorrent", "config")
    os.makedirs(conf_dir)
    lines = [
        "[LegalNotice]", "Accepted=true", "",
        "[Preferences]",
        "WebUI\\Address=127.0.0.1",
        "WebUI\\Port=%d" % webui_port,
        "WebUI\\LocalHostAuth=false",
        "WebUI\\UseUPnP=false",
        "General\\Locale=en",
        "", "[BitTorrent]",
        "Session\\DHTEnabled=false",
        "Session\\LSDEnabled=false",
        "Session\\PeXEnabled=false",
        "Session\\Port=%d" % bt_port,
        "Session\\Interface=lo",
        "Session\\InterfaceName=lo",
        "Session\\InterfaceAddress=127.0.0.1",
    ]
    if mode == "tcp":
        lines.append("Session\\BTProtocol=TCP")
    lines += ["", "[Network]", "PortForwardingEnabled=false", ""]
    with open(os.path.join(conf_dir, "qBittorrent.conf"), "w") as f:
        f.write("\n".join(lines))


class Api:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d/api/v2/" % port

    def call(self, path, data=None, body=None, ctype=None, timeout=10):
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
            ctype = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base + path, data=body)
        if ctype:
            req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def json(self, path):
        return json.loads(self.call(path))

    def add_torrent(self, torrent, save_dir):
        boundary = "----qbtnox%d" % int(time.time() * 1000)
        with open(torrent, "rb") as f:
            data = f.read()
        parts = []
        for name, value in (("savepath", save_dir), ("paused", "false"),
                            ("skip_checking", "false"), ("root_folder", "true")):
            parts.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                          % (boundary, name, value)).encode())
        parts.append(("--%s\r\nContent-Disposition: form-data; name=\"torrents\"; "
                      "filename=\"%s\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
                      % (boundary, os.path.basename(torrent))).encode() + data + b"\r\n")
        parts.append(("--%s--\r\n" % boundary).encode())
        return self.call("torrents/add", body=b"".join(parts),
                         ctype="multipart/form-data; boundary=" + boundary)


def info_hash(torrent):
    """The v1 info-hash: SHA-1 of the raw bytes of the info value (a minimal bencode walk)."""
    import hashlib
    with open(torrent, "rb") as f:
        b = f.read()

    def skip(i):
        c = b[i:i + 1]
        if c == b"i":
            return b.index(b"e", i) + 1
        if c in (b"l", b"d"):
            i += 1
            while b[i:i + 1] != b"e":
                i = skip(i)
            return i + 1
        colon = b.index(b":", i)
        return colon + 1 + int(b[i:colon])

    assert b[:1] == b"d"
    i = 1
    while b[i:i + 1] != b"e":
        key_end = skip(i)
        key = b[b.index(b":", i) + 1:key_end]
        val_end = skip(key_end)
        if key == b"info":
            return hashlib.sha1(b[key_end:val_end]).hexdigest()
        i = val_end
    raise SystemExit("no info dictionary in %s" % torrent)


def stop(proc, api, t0):
    if proc.poll() is not None:
        return
    try:
        api.call("app/shutdown", data={}, timeout=5)
    except (OSError, urllib.error.URLError) as e:
        log(t0, "app/shutdown: %s" % e)
    for sig, wait in ((None, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if sig is not None and proc.poll() is None:
            log(t0, "sending %s to pid %d" % (sig.name, proc.pid))
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass


def main(argv):
    if len(argv) not in (4, 5) or (len(argv) == 5 and argv[4] not in ("default", "tcp")):
        sys.stderr.write(__doc__)
        return 2
    torrent, save_dir, peer, timeout = argv[0], os.path.abspath(argv[1]), argv[2], argv[3]
    mode = argv[4] if len(argv) == 5 else "default"
    try:
        timeout = float(timeout)
        host, port = peer.rsplit(":", 1)
        int(port)
    except ValueError:
        sys.stderr.write("qbt_nox.py: bad TIMEOUT or HOST:PORT\n")
        return 2
    if shutil.which("qbittorrent-nox") is None:
        sys.stderr.write("qbt_nox.py: qbittorrent-nox is not installed\n")
        return 2
    t0 = time.time()
    deadline = t0 + timeout
    ih = info_hash(torrent)
    profile = tempfile.mkdtemp(prefix="qbt-nox-")
    webui_port, bt_port = free_port(), free_port()
    write_config(profile, webui_port, bt_port, mode)
    os.makedirs(save_dir, exist_ok=True)
    env = dict(os.environ, HOME=profile, XDG_CONFIG_HOME=os.path.join(profile, "xdg-config"),
               XDG_DATA_HOME=os.path.join(profile, "xdg-data"),
               XDG_CACHE_HOME=os.path.join(profile, "xdg-cache"))
    qlog = open(os.path.join(profile, "stdout.log"), "wb")
    proc = subprocess.Popen(["qbittorrent-nox", "--profile=" + profile],
                            stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT,
                            env=env)
    log(t0, "qbittorrent-nox pid %d, profile %s, webui 127.0.0.1:%d, listen 127.0.0.1:%d, mode %s"
        % (proc.pid, profile, webui_port, bt_port, mode))
    api = Api(webui_port)
    result = {"ok": False, "mode": mode}
    try:
        result.update(run(api, proc, t0, deadline, torrent, save_dir, ih, peer, mode, bt_port))
    except Exception as e:  # reported as JSON; the process is still stopped below
        result["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        stop(proc, api, t0)
        qlog.close()
    if not result["ok"]:
        for name in ("qBittorrent/data/logs/qbittorrent.log", "stdout.log"):
            try:
                with open(os.path.join(profile, name), errors="replace") as f:
                    sys.stderr.write("---- %s (tail)\n%s\n" % (name, f.read()[-6000:]))
            except OSError:
                pass
    if os.environ.get("QBT_KEEP_PROFILE") == "1":
        log(t0, "profile kept: " + profile)
    else:
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(result, sort_keys=True))
    sys.stdout.flush()
    return 0 if result["ok"] else 1


def run(api, proc, t0, deadline, torrent, save_dir, ih, peer, mode, bt_port):
    out = {}
    # The WebUI comes up once the session has started.
    while True:
        if proc.poll() is not None:
            raise RuntimeError("qbittorrent-nox exited with %s before its WebUI answered"
                               % proc.returncode)
        try:
            out["version"] = api.call("app/version", timeout=2).decode().strip()
            break
        except (OSError, urllib.error.URLError):
            if time.time() >= deadline:
                raise RuntimeError("WebUI did not answer before the timeout")
            time.sleep(0.1)
    out["startup_seconds"] = round(time.time() - t0, 3)
    prefs = api.json("app/preferences")
    want = {"dht": False, "lsd": False, "pex": False, "upnp": False,
            "bittorrent_protocol": 1 if mode == "tcp" else 0, "listen_port": bt_port,
            "current_interface_address": "127.0.0.1"}
    wrong = {k: prefs.get(k) for k, v in want.items() if prefs.get(k) != v}
    if wrong:
        raise RuntimeError("preferences not as configured: %r (want %r)" % (wrong, want))
    log(t0, "qBittorrent %s up; preferences checked: %r" % (out["version"], want))
    added = time.time()
    reply = api.add_torrent(torrent, save_dir)
    log(t0, "torrents/add: %r" % reply)
    connections = set()
    last_peer_add = 0.0
    last_report = 0.0
    connected_at = None
    while True:
        now = time.time()
        if proc.poll() is not None:
            raise RuntimeError("qbittorrent-nox exited with %s" % proc.returncode)
        if now >= deadline:
            raise RuntimeError("timeout: %r" % out.get("last"))
        infos = json.loads(api.call("torrents/info?hashes=" + ih))
        if not infos:
            time.sleep(0.1)
            continue
        t = infos[0]
        out["last"] = {k: t.get(k) for k in ("state", "progress", "num_seeds", "downloaded")}
        peers = json.loads(api.call("sync/torrentPeers?rid=0&hash=" + ih)).get("peers") or {}
        for addr, p in peers.items():
            kind = p.get("connection") or "?"
            if kind not in connections:
                log(t0, "peer %s connection %s client %r" % (addr, kind, p.get("client")))
            connections.add(kind)
        seed_seen = any(p.get("progress", 0) >= 1 for p in peers.values())
        if (seed_seen or t.get("num_seeds", 0) > 0) and connected_at is None:
            connected_at = now
            out["connect_seconds"] = round(now - added, 3)
            log(t0, "seed connected")
        if t.get("progress", 0) >= 1 and t.get("state") in DONE_STATES:
            out.update(ok=True, seconds=round(now - added, 3), size=t.get("size"),
                       downloaded=t.get("downloaded_session", t.get("downloaded")),
                       state=t.get("state"), connections=sorted(connections),
                       transports=sorted({TRANSPORTS.get(c, c) for c in connections}))
            del out["last"]
            return out
        if connected_at is None and now - last_peer_add >= 2:
            reply = api.call("torrents/addPeers", data={"hashes": ih, "peers": peer})
            last_peer_add = now
            log(t0, "addPeers %s: %r" % (peer, reply))
        if now - last_report >= 1:
            last_report = now
            log(t0, "state %s progress %.4f seeds %s dlspeed %s"
                % (t.get("state"), t.get("progress", 0), t.get("num_seeds"), t.get("dlspeed")))
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
