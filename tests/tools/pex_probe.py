#!/usr/bin/python3
"""A peer that leaks a peer list: checks that a leecher would hear PEX (standard library only).

  pex_probe.py INFOHASH_HEX ADVERTISED_IP TIMEOUT_SECS

Listens on 127.0.0.1 (random port) for the leecher to dial it, and on ADVERTISED_IP (another
loopback address, random port) for the leecher to dial the address it is told about. Prints
"listening 127.0.0.1:PORT" at once. On the first plain BitTorrent handshake for INFOHASH
(connections that are not one, e.g. libtorrent's first, encrypted attempt, are closed: libtorrent
then retries in plaintext) it answers with a handshake that sets the extension bit (BEP 10),
sends an extension handshake offering ut_pex, and prints the leecher's own extension handshake
as "ext_m NAME=ID,..." (its `m`). If the leecher offers ut_pex, it sends one ut_pex message
(BEP 11) whose `added` is ADVERTISED_IP:PORT ("sent_pex ADDR"), then waits for the leecher to
dial that address ("dialled ADDR") and keeps both connections open (so the leecher lists them)
until the leecher closes them or TIMEOUT_SECS have passed since the start. It never sends
pieces. Exit 0 after the leecher dialled, 1 when it did not offer ut_pex or did not dial within
TIMEOUT_SECS, 2 on bad arguments.

tests/magnet.rs uses it to prove that its private-torrent check can fail: a leecher set up like
the ones there does act on a peer list for a private torrent, so one that never lists a PEX
peer was never sent one.
"""
import socket
import struct
import sys
import time


def bdecode(data, i=0):
    """One bencoded value at data[i:]: (value, next index). Raises ValueError/IndexError."""
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            items.append(v)
        if c == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2])), i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise ValueError("bad bencode at byte %d" % i)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise ConnectionError("closed after %d of %d bytes" % (len(buf), n))
        buf += got
    return buf


def send_extended(sock, ext_id, payload):
    sock.sendall(struct.pack(">IBB", 2 + len(payload), 20, ext_id) + payload)


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    try:
        info_hash = bytes.fromhex(argv[1])
        socket.inet_aton(argv[2])
        timeout = float(argv[3])
    except (ValueError, OSError):
        info_hash, timeout = b"", 0
    if len(info_hash) != 20 or not timeout > 0:
        sys.stderr.write("pex_probe.py: INFOHASH_HEX (40 hex digits) ADVERTISED_IP TIMEOUT_SECS\n")
        return 2
    deadline = time.time() + timeout
    left = lambda: max(0.1, deadline - time.time())
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    bait = socket.socket()
    bait.bind((argv[2], 0))
    bait.listen(4)
    print("listening 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
    proto = bytes([19]) + b"BitTorrent protocol"
    try:
        while True:
            srv.settimeout(left())
            conn, addr = srv.accept()
            conn.settimeout(left())
            try:
                hs = read_exact(conn, 68)
            except (ConnectionError, socket.timeout):
                hs = b""
            if hs[:20] == proto and hs[28:48] == info_hash:
                break
            sys.stderr.write("pex_probe.py: not a plain handshake for the info-hash from %s:%d\n"
                             % addr)
            conn.close()
        conn.sendall(proto + bytes([0, 0, 0, 0, 0, 0x10, 0, 0]) + info_hash + b"-PP0001-pexprobe0000")
        send_extended(conn, 0, b"d1:md6:ut_pexi1eee")
        theirs = 0
        while True:
            (length,) = struct.unpack(">I", read_exact(conn, 4))
            body = read_exact(conn, length)
            if length >= 2 and body[0] == 20 and body[1] == 0:
                m = bdecode(body[2:])[0].get(b"m", {})
                print("ext_m", ",".join("%s=%s" % (k.decode(), v) for k, v in sorted(m.items())),
                      flush=True)
                theirs = m.get(b"ut_pex", 0)
                break
        if not theirs:
            print("no_ut_pex", flush=True)
            return 1
        ip, port = bait.getsockname()
        added = socket.inet_aton(ip) + struct.pack(">H", port)
        send_extended(conn, theirs, b"d5:added6:" + added + b"7:added.f1:\x00e")
        print("sent_pex %s:%d" % (ip, port), flush=True)
        bait.settimeout(left())
        dialled, who = bait.accept()
        print("dialled %s:%d from %s:%d" % (ip, port, who[0], who[1]), flush=True)
    except (socket.timeout, ConnectionError, ValueError, IndexError) as e:
        print("timeout_or_error %s" % e, flush=True)
        return 1
    for sock in (dialled, conn):
        try:
            sock.settimeout(left())
            while sock.recv(65536):
                pass
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
