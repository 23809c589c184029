#!/usr/bin/python3
"""Announce a seed to an HTTP tracker on its behalf (standard library only).

  announce.py TRACKER_HTTP_URL INFOHASH_HEX PORT [--event started|completed|stopped|none]
              [--left BYTES]

Sends one GET TRACKER_HTTP_URL?info_hash=..&peer_id=..&port=PORT&uploaded=0&downloaded=0&left=0
&compact=1&event=started, so that the tracker lists a seed at <the address this request comes
from>:PORT (127.0.0.1 when the tracker is on loopback; trackers such as bittorrent-tracker ignore
an `ip=` parameter). Clients that find peers only through a tracker (aria2) then find the seed.
With --left BYTES (more than 0) it announces a leecher that still needs that many bytes.
Prints the decoded reply ("interval N", "complete N", "incomplete N", "peer IP:PORT" lines) and
exits 0; exits 1 on an HTTP/network error, a `failure reason` or an undecodable reply; 2 on bad
arguments. The peer_id is random ("-US0000-" + 12 random characters) for each run.
"""
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 10


def bdecode(data, i=0):
    """Decode one bencoded value at data[i:]; return (value, next index). Raises ValueError."""
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
            if not isinstance(k, bytes):
                raise ValueError("dictionary key is not a string")
            out[k], i = bdecode(data, i)
        return out, i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        start = colon + 1
        if start + n > len(data):
            raise ValueError("string runs past the end")
        return data[start:start + n], start + n
    raise ValueError("bad bencode at byte %d" % i)


def peers_of(value):
    """Peers from a compact (bytes) or dictionary (list) `peers` value, as 'ip:port' strings."""
    if isinstance(value, bytes):
        return ["%s:%d" % (socket.inet_ntoa(value[j:j + 4]), int.from_bytes(value[j + 4:j + 6], "big"))
                for j in range(0, len(value) - len(value) % 6, 6)]
    out = []
    for p in value or []:
        out.append("%s:%s" % (p.get(b"ip", b"?").decode(errors="replace"), p.get(b"port", "?")))
    return out


def main(argv):
    args = argv[1:]
    opts = {"--event": "started", "--left": "0"}
    while len(args) >= 5 and args[3] in opts:
        opts[args[3]] = args[4]
        args = args[:3] + args[5:]
    event, left = opts["--event"], opts["--left"]
    if (len(args) != 3 or event not in ("started", "completed", "stopped", "none")
            or not left.isdigit()):
        sys.stderr.write(__doc__)
        return 2
    url, ih_hex, port = args
    try:
        info_hash = bytes.fromhex(ih_hex)
        port_n = int(port)
    except ValueError:
        sys.stderr.write("announce.py: INFOHASH_HEX must be 40 hex digits and PORT a number\n")
        return 2
    if len(info_hash) != 20 or not 0 < port_n < 65536:
        sys.stderr.write("announce.py: INFOHASH_HEX must be 40 hex digits and PORT 1..65535\n")
        return 2

    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    peer_id = ("-US0000-" + "".join(alphabet[b % 36] for b in os.urandom(12))).encode()
    query = {
        "info_hash": info_hash, "peer_id": peer_id, "port": str(port_n), "uploaded": "0",
        "downloaded": "0", "left": left, "compact": "1", "numwant": "50",
    }
    if event != "none":
        query["event"] = event
    full = url + ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
    try:
        with urllib.request.urlopen(full, timeout=TIMEOUT_S) as resp:
            body = resp.read()
    except (urllib.error.URLError, OSError) as e:
        sys.stderr.write("announce.py: %s: %s\n" % (url, e))
        return 1
    try:
        reply, end = bdecode(body)
        if end != len(body) or not isinstance(reply, dict):
            raise ValueError("not one bencoded dictionary")
    except (ValueError, IndexError) as e:
        sys.stderr.write("announce.py: undecodable reply (%s): %r\n" % (e, body[:200]))
        return 1
    if b"failure reason" in reply:
        sys.stderr.write("announce.py: tracker failure: %s\n" % reply[b"failure reason"].decode(errors="replace"))
        return 1
    print("announced %s port %d event %s" % (ih_hex.lower(), port_n, event))
    for key in (b"interval", b"complete", b"incomplete"):
        if key in reply:
            print("%s %s" % (key.decode(), reply[key]))
    if b"warning message" in reply:
        print("warning %s" % reply[b"warning message"].decode(errors="replace"))
    for p in peers_of(reply.get(b"peers", b"")):
        print("peer", p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
