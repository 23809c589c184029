#!/usr/bin/python3
"""Writes the hand-made seed inputs under fuzz/seeds/<target>/ (small files, committed).

The .torrent seeds (fuzz/seeds/metainfo/*.torrent) were made once with `uringseed make`,
transmission-create, mktorrent and tests/tools/lt_tool.py; this script copies them into the
bencode and tracker seeds too. Run from anywhere: python3 fuzz/make_seeds.py
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
    raise TypeError(v)


# --- wire messages (BEP 3 / BEP 6 / BEP 10) ---
def msg(mid, payload=b""):
    return struct.pack(">IB", 1 + len(payload), mid) + payload


KEEPALIVE = b"\0\0\0\0"
CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED = (msg(i) for i in range(4))


def have(i):
    return msg(4, struct.pack(">I", i))


def bitfield(bits):
    return msg(5, bits)


def request(i, b, n, mid=6):
    return msg(mid, struct.pack(">III", i, b, n))


def cancel(i, b, n):
    return request(i, b, n, 8)


def reject(i, b, n):
    return request(i, b, n, 16)


def piece(i, b, data):
    return msg(7, struct.pack(">II", i, b) + data)


def hash_request(root, base, index, length, proof):
    return msg(21, root + struct.pack(">IIII", base, index, length, proof))


HAVE_ALL, HAVE_NONE = msg(14), msg(15)
PORT = msg(9, struct.pack(">H", 6881))
SUGGEST = msg(13, struct.pack(">I", 1))
ALLOWED_FAST = msg(17, struct.pack(">I", 2))
EXT_HS = msg(20, b"\0" + benc({"m": {"ut_metadata": 1}, "reqq": 250, "v": "fuzz 1.0"}))


def handshake(reserved=bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04])):
    return b"\x13BitTorrent protocol" + reserved + bytes(range(20)) + b"-XX0001-abcdefghijkl"


STREAM = b"".join([
    EXT_HS, HAVE_NONE, bitfield(b"\x00\x00"), have(3), INTERESTED, KEEPALIVE,
    request(0, 0, 16384), request(0, 16384, 16384), cancel(0, 0, 16384), PORT, SUGGEST,
    ALLOWED_FAST, NOT_INTERESTED, CHOKE, UNCHOKE, reject(1, 0, 16384), piece(1, 0, b"xyz"),
    msg(42, b"unknown"), HAVE_ALL,
])


def wire_seeds():
    # wire_decoder: 4 bytes choosing the cap, then the stream; plus handshakes.
    cap_big = bytes([2, 0, 0, 0])
    put("wire_decoder", "handshake_then_messages", handshake() + STREAM)
    put("wire_decoder", "stream_cap_1MiB", cap_big + STREAM)
    put("wire_decoder", "stream_cap_u16", bytes([1, 0x40, 0, 0]) + STREAM)
    put("wire_decoder", "stream_cap_u8", bytes([0, 13, 0, 0]) + request(0, 0, 16384) + have(1))
    put("wire_decoder", "too_long", cap_big + struct.pack(">I", 2 << 20) + b"\x07")
    put("wire_decoder", "bad_length", cap_big + msg(6, b"\0" * 11))
    put("wire_decoder", "truncated", cap_big + request(0, 0, 16384)[:9])
    put("wire_decoder", "handshake_only", handshake())


def peer_header(pl_idx=5, pieces=6, short=1000, files=(), have_all=True, mask=b"",
                fast=True, ext=True, send_hs=True, max_req=1, max_q=3, ctrl=4000, idle=6000,
                metadata=True, v2=False):
    """The header peer_state_machine.rs reads before its operations."""
    h = bytes([pl_idx, pieces - 1]) + struct.pack("<H", short)
    h += bytes([len(files)])  # nfiles - 1
    for length, pad in files:
        h += struct.pack("<H", length) + bytes([1 if pad else 0])
    h += bytes([0 if have_all else 1]) + mask
    h += bytes([0 if metadata else 1])
    h += bytes([(1 if fast else 0) | (2 if ext else 0) | (4 if send_hs else 0)
                | (0x10 if v2 else 0)])
    h += bytes([max_req, max_q - 1]) + struct.pack("<H", ctrl) + struct.pack("<H", idle)
    h += struct.pack("<H", 6881)  # listen port
    return h


def feed(data):
    """Operations that feed `data` in chunks of at most 255 bytes."""
    out = b""
    for i in range(0, len(data), 200):
        chunk = data[i:i + 200]
        out += bytes([0, len(chunk)]) + chunk
    return out


POLL = bytes([3])


def run(max_units):  # max_bytes = units * 64
    return bytes([4]) + struct.pack("<H", max_units)


def choke(c):
    return bytes([6, 1 if c else 0])


def timeout(jump):
    return bytes([7 | 0x30, 1 if jump else 0])


def peer_seeds():
    reqs = b"".join(request(0, b, 16384) for b in (0, 16384, 32768))
    put("peer_state_machine", "fast_unchoked_requests_run",
        peer_header() + POLL + feed(INTERESTED) + choke(False) + POLL + feed(reqs) + run(1024)
        + run(256) + POLL + timeout(False))
    put("peer_state_machine", "slow_peer_partial_have",
        peer_header(fast=False, ext=False, have_all=False, mask=b"\xdc") + POLL
        + feed(bitfield(b"\x80") + INTERESTED) + choke(False)
        + feed(request(1, 0, 16384) + request(1, 16384, 16384)) + run(300) + choke(True) + POLL
        + choke(False) + feed(request(2, 0, 16384)))
    put("peer_state_machine", "multi_file_pad_cancel_reject",
        peer_header(pl_idx=5, pieces=3, short=5, files=((300, False), (0, False), (1, True)),
                    max_q=4, max_req=3)
        + POLL + feed(INTERESTED + KEEPALIVE) + choke(False)
        + feed(request(0, 0, 16384) + request(0, 16384, 16384) + cancel(0, 0, 16384)
               + request(2, 0, 70000) + request(9, 0, 1) + request(0, 65530, 10)
               + request(0, 32768, 16384) + request(0, 49152, 16384) + request(1, 0, 300))
        + run(2000) + POLL + choke(True) + POLL + timeout(True))
    put("peer_state_machine", "stream_split_everywhere",
        peer_header() + b"".join(bytes([0, 1, b]) for b in (INTERESTED + request(0, 0, 16384)))
        + choke(False) + feed(request(5, 0, 1000) + EXT_HS + HAVE_NONE + PORT + SUGGEST)
        + run(65535) + POLL)
    put("peer_state_machine", "idle_timeout",
        peer_header(idle=1) + POLL + timeout(True) + timeout(True))
    # v2: one file of 6 pieces of 64 KiB (piece layer at height 2, root at 5).
    root = bytes([0x40]) * 32
    put("peer_state_machine", "v2_hash_requests",
        peer_header(v2=True, ctrl=4000) + POLL
        + feed(hash_request(root, 2, 0, 4, 2) + hash_request(root, 2, 4, 4, 2)
               + hash_request(root, 3, 0, 2, 1) + hash_request(root, 0, 0, 2, 0)
               + hash_request(bytes(32), 2, 0, 2, 0) + hash_request(root, 2, 0, 1024, 0)
               + hash_request(root, 2, 2, 4, 0) + hash_request(root, 2, 0, 2, 9))
        + POLL + feed(hash_request(root, 2, 0, 8, 2) * 70) + POLL)


def tracker_seeds():
    compact = bytes([127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x1a, 0xe2])
    compact6 = bytes(15) + b"\x01" + b"\x1a\xe1"
    put("tracker_http", "compact", benc({"interval": 1800, "min interval": 900,
                                         "complete": 5, "incomplete": 2, "peers": compact}))
    put("tracker_http", "compact_v6", benc({"interval": 60, "peers": b"", "peers6": compact6,
                                            "tracker id": "abc", "warning message": "hm"}))
    put("tracker_http", "dict_peers", benc({"interval": 10, "peers": [
        {"ip": "127.0.0.1", "port": 6881, "peer id": b"A" * 20},
        {"ip": "::1", "port": 6882}, {"ip": "host.example", "port": 1}, {"ip": "1.2.3.4", "port": 70000}]}))
    put("tracker_http", "failure", benc({"failure reason": "unregistered torrent"}))
    put("tracker_http", "no_interval", benc({"peers": compact}))
    put("tracker_http", "bad_peers_len", benc({"interval": 5, "peers": compact[:7]}))
    put("tracker_http", "negative_interval", benc({"interval": -5, "complete": -1, "peers": []}))

    # tracker_udp: flags byte (bit 0: v6, bit 1: explicit tid follows), then the packet.
    tid = 0x11223344
    conn = struct.pack(">IIQ", 0, tid, 0x41727101980)
    ann4 = struct.pack(">IIIII", 1, tid, 1800, 3, 7) + compact
    ann6 = struct.pack(">IIIII", 1, tid, 60, 0, 1) + compact6
    err = struct.pack(">II", 3, tid) + b"torrent not registered"
    put("tracker_udp", "connect", b"\x00" + conn)
    put("tracker_udp", "connect_explicit_tid", b"\x02" + struct.pack(">I", tid) + conn)
    put("tracker_udp", "announce_v4", b"\x00" + ann4)
    put("tracker_udp", "announce_v6", b"\x01" + ann6)
    put("tracker_udp", "error", b"\x00" + err)
    put("tracker_udp", "other_tid", b"\x02" + struct.pack(">I", 1) + ann4)
    put("tracker_udp", "truncated", b"\x00" + ann4[:15])

    # tracker_scrape: flags byte (bit 0: UDP; HTTP: bits 1-2 how many of the target's three
    # info-hashes were asked about), then the reply (UDP: a count asked about, then the packet).
    counts = {"complete": 5, "incomplete": 3, "downloaded": 50, "name": "x"}
    put("tracker_scrape", "http_two", b"\x06" + benc({"files": {
        bytes(20): counts, b"A" * 20: {"complete": 1}, b"B" * 20: counts},
        "flags": {"min_request_interval": 900}}))
    put("tracker_scrape", "http_latin1_key", b"\x06" + benc({"files": {
        "\u00ff".encode() * 20: counts, b"\xff" * 20: counts, b"short": counts}}))
    put("tracker_scrape", "http_failure", b"\x02" + benc({"failure reason": "no scrapes"}))
    put("tracker_scrape", "http_no_files", b"\x02" + benc({"files": [], "interval": 5}))
    entries = struct.pack(">III", 5, 50, 3) + struct.pack(">III", 0, 7, 1)
    put("tracker_scrape", "udp_two", b"\x01\x02" + struct.pack(">II", 2, tid) + entries)
    put("tracker_scrape", "udp_short", b"\x01\x05" + struct.pack(">II", 2, tid) + entries[:12])
    put("tracker_scrape", "udp_partial", b"\x01\x02" + struct.pack(">II", 2, tid) + entries[:13])
    put("tracker_scrape", "udp_error", b"\x01\x02" + struct.pack(">II", 3, tid) + b"nope")


def resume_seeds():
    # The target appends the SHA-1 itself; seeds are the bencoded body. One signed record too.
    stamp = {"size": 40000, "mtime": 1700000000, "mtime_ns": 123, "ctime": 1700000001,
             "ctime_ns": 456, "ino": 1234567, "dev": 2049}
    body = benc({"version": 1, "info hash": bytes(range(20)), "files": [stamp, {}, stamp],
                 "have": b"\xff\xe0"})
    put("resume", "record_body", body)
    put("resume", "record_signed", body + hashlib.sha1(body).digest())
    put("resume", "wrong_version", benc({"version": 2, "info hash": bytes(20), "files": [],
                                         "have": b""}))
    put("resume", "short_hash", benc({"version": 1, "info hash": b"abc", "files": [{}],
                                      "have": b"\x80"}))


def bencode_seeds():
    put("bencode", "nested", benc({"a": [1, -2, b"xy", {"b": []}], "c": {}, "d": 0}))
    put("bencode", "ints", b"li0ei-1ei9223372036854775807ei-9223372036854775808ee")
    put("bencode", "prefix_then_garbage", benc({"k": "v"}) + b"trailing")
    put("bencode", "unsorted_keys", b"d1:bi1e1:ai2ee")
    put("bencode", "deep", b"l" * 70 + b"e" * 70)
    for name in sorted(os.listdir(os.path.join(SEEDS, "metainfo"))):
        with open(os.path.join(SEEDS, "metainfo", name), "rb") as f:
            put("bencode", name, f.read())


def config_seeds():
    put("config", "minimal", b"[server]\nupload_slots = 4\n")
    put("config", "torrents", b'[[torrents]]\ntorrent = "a.torrent"\ndata = "/srv"\n'
        b'[server]\nlisten = ["0.0.0.0:6881", "[::]:6881"]\nmax_request_bytes = 16384\n')
    put("config", "bad_key", b"[server]\nbogus = 1\n")
    put("config", "bad_range", b"[server]\nmax_request_bytes = 1\n")
    put("config", "unicode", "[log]\nlevel = \"d\u00e9bug\"\n# \u2603\n".encode())
    example = os.path.join(HERE, "..", "config", "uringseed.example.toml")
    with open(example, "rb") as f:
        put("config", "uringseed.example.toml", f.read())


# --- KRPC (BEP 5 / 32 / 42); the fuzz target replaces EE EE with the tid it last sent ---
def krpc_seeds():
    me = b"abcdefghij0123456789"
    ih = b"mnopqrstuvwxyz123456"
    def q(method, args, tid=b"aa", **top):
        d = {"t": tid, "y": "q", "q": method, "a": dict(args, id=me)}
        d.update(top)
        return benc(d)
    def r(body, tid=b"\xee\xee", ip=None):
        d = {"t": tid, "y": "r", "r": dict(body)}
        if ip:
            d["ip"] = ip
        return benc(d)
    def node(i):  # a node the target can speak as: 10.0.0.(i+1):6881
        return bytes([0x30 + i]) * 20 + bytes([10, 0, 0, i + 1]) + struct.pack(">H", 6881)
    def chunk(sel, pkt):
        return bytes([sel]) + struct.pack(">H", len(pkt)) + pkt
    put("krpc", "ping", q("ping", {}))
    put("krpc", "ping_ro_v", q("ping", {}, ro=1, v=b"UT\x03\x05"))
    put("krpc", "find_node", q("find_node", {"target": ih}))
    put("krpc", "find_node_want", q("find_node", {"target": ih, "want": ["n4", "n6"]}))
    put("krpc", "get_peers", q("get_peers", {"info_hash": ih}))
    put("krpc", "announce_peer", q("announce_peer", {"info_hash": ih, "port": 6881,
                                                      "token": b"aoeusnth", "implied_port": 1}))
    put("krpc", "unknown_method", q("vote", {"target": ih}))
    put("krpc", "error", benc({"t": b"aa", "y": "e", "e": [201, "A Generic Error Ocurred"]}))
    put("krpc", "response_nodes", r({"id": me, "nodes": node(2) + node(3)}, tid=b"aa",
                                    ip=bytes([1, 2, 3, 4, 0x1a, 0xe1])))
    put("krpc", "response_values", r({"id": me, "token": b"aoeusnth",
                                      "values": [bytes([1, 2, 3, 4, 0, 80]), bytes(16) + b"\x00\x51"]},
                                     tid=b"aa"))
    put("krpc", "response_nodes6", r({"id": me, "nodes6": bytes(20) + bytes(15) + b"\x01\x1a\xe1"},
                                     tid=b"aa"))
    # A whole lookup: the routers answer with nodes, the nodes answer with peers and tokens,
    # then time passes (announces go out), then the announces are answered.
    seq = chunk(0, r({"id": b"R" * 20, "nodes": b"".join(node(i) for i in range(2, 8))},
                     ip=bytes([1, 2, 3, 4, 0x1a, 0xe1])))
    seq += chunk(1, r({"id": b"S" * 20, "nodes": node(2)}, ip=bytes([1, 2, 3, 4, 0x1a, 0xe1])))
    for i in range(2, 8):
        seq += chunk(i, r({"id": bytes([0x30 + i]) * 20, "token": b"tok%d" % i,
                           "values": [bytes([5, 6, 7, i, 0x1a, 0xe1])]},
                          ip=bytes([1, 2, 3, 4, 0x1a, 0xe1])))
    for i in range(2, 8):
        seq += chunk(i, r({"id": bytes([0x30 + i]) * 20}))
    seq += chunk(0x80 | 0x78 | 2, q("get_peers", {"info_hash": ih}))
    put("krpc", "lookup_sequence", seq)
    put("krpc", "query_flood", b"".join(chunk(3, q("ping", {}, tid=bytes([i]))) for i in range(40)))


# --- the built-in tracker (src/tracker_server): `[sel, len_hi, len_lo, bytes...]` requests ---
def tracker_server_seeds():
    ih = b"\xab" * 20  # the hash the target registers
    def esc(b):
        return "".join("%%%02x" % c for c in b)
    def ann(port, left, event="started", extra=""):
        return ("/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d"
                "&event=%s%s" % (esc(ih), esc(b"-XX0001-%012d" % port), port, left, event,
                                 extra)).encode()
    def chunk(sel, b):
        return bytes([sel]) + struct.pack(">H", len(b)) + b
    connect = struct.pack(">QII", 0x41727101980, 0, 7)
    def uann(port, left, event=2, numwant=-1):
        return (struct.pack(">QII", 0, 1, 8) + ih + b"-YY0001-%012d" % port
                + struct.pack(">QQQIIIiH", 0, left, 0, event, 0, 0, numwant, port))
    uscrape = struct.pack(">QII", 0, 2, 9) + ih + b"\x01" * 20
    put("tracker_server", "http_announce", ann(6881, 10))
    put("tracker_server", "http_scrape", ("/scrape?info_hash=%s" % esc(ih)).encode())
    put("tracker_server", "udp_connect", connect)
    put("tracker_server", "http_sequence", b"".join(
        [chunk(0x09, ann(1000, 0)), chunk(0x0a, ann(1001, 5, "", "&compact=0")),
         chunk(0x0c, ann(1002, 5, "completed", "&numwant=3")),
         chunk(0xe9, ann(1000, 0, "stopped")), chunk(0x08, b"/scrape?info_hash=" + esc(ih).encode())]))
    put("tracker_server", "udp_sequence", b"".join(
        [chunk(0x00, connect), chunk(0x10, uann(2000, 5)), chunk(0x11, uann(2001, 0, 1)),
         chunk(0x14, uann(2002, 5, 0, 10)), chunk(0x15, uann(2003, 5)),
         chunk(0x30, uscrape), chunk(0x40, uann(2000, 5, 3)), chunk(0x12, uann(2004, 5)[:60])]))
    put("tracker_server", "udp_expired", b"".join(
        [chunk(0x10, uann(2000, 5)), chunk(0xe0, uann(2000, 5)), chunk(0xf0, uann(2001, 5))]))


# --- the web seed (src/webseed): pipelined HTTP/1.1 heads against `f` (single) and `d` (multi) ---
def webseed_http_seeds():
    put("webseed_http", "get_range", b"GET /f HTTP/1.1\r\nHost: h\r\nRange: bytes=0-99\r\n\r\n")
    put("webseed_http", "pipelined", b"".join([
        b"HEAD /d/s/b%20b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /d/a HTTP/1.1\r\nIf-None-Match: \"0202020202020202020202020202020202020202-0\"\r\n\r\n",
        b"GET /d/empty HTTP/1.1\r\nRange: bytes=0-\r\n\r\n",
        b"GET /d/s/b%20b HTTP/1.1\r\nRange: bytes=150-280\r\n\r\n",
        b"POST /f HTTP/1.0\r\n\r\n"]))
    put("webseed_http", "conditional", b"".join([
        b"GET /f HTTP/1.1\r\nRange: bytes=-50\r\nIf-Range: Sun, 13 Sep 2020 12:26:40 GMT\r\n\r\n",
        b"GET /f?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n"
        b"If-Modified-Since: Sun, 13 Sep 2020 12:26:40 GMT\r\n\r\n",
        b"GET http://h/f HTTP/1.1\r\nRange: bytes=900-999,0-1\r\n\r\n"]))
    put("webseed_http", "refused", b"".join([
        b"GET /d/%2e%2e/a HTTP/1.1\r\n\r\n", b"GET /d/gone HTTP/1.1\r\n\r\n",
        b"GET /f HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"GET /f HTTP/2.0\r\n\r\n"]))


# --- the HTTP server's routes (src/api, src/http.rs): `[flags, len_hi, len_lo, payload]` requests;
# flags = method | credentials << 3 | content type << 5, payload = target, header lines, blank
# line, body; \x7fT the token, \x7fS the last SID, \x7fR the data root, \x7f0..3 info-hashes,
# \x7fN the fourth torrent's metainfo (see fuzz_targets/api_request.rs) ---
def api_request_seeds():
    meth = {"GET": 0, "HEAD": 1, "POST": 2, "PATCH": 3, "DELETE": 4, "PUT": 5, "OPTIONS": 6, "X": 7}
    cred = {"none": 0, "bearer": 1, "cookie": 2, "sid": 3}
    ctype = {None: 0, "json": 1, "form": 2, "multipart": 3, "torrent": 4}

    def req(m, target, body=b"", auth="none", ct=None, headers=()):
        payload = target.encode() + b"\n" + b"".join(h + b"\n" for h in headers) + b"\n" + body
        return bytes([meth[m] | cred[auth] << 3 | ctype[ct] << 5]) + struct.pack(">H", len(payload)) + payload

    def part(name, data, filename=None):
        fn = b'; filename="%s"' % filename if filename else b""
        return b'--B\r\nContent-Disposition: form-data; name="%s"%s\r\n\r\n%s\r\n' % (name, fn, data)

    put("api_request", "native_outsider", b"".join([
        req("GET", "/api/v1/status"),
        req("GET", "/api/v1/openapi.json"),
        req("POST", "/api/v1/login", b'{"token": "nope"}', ct="json"),
        req("POST", "/api/v1/login", b"[1]", ct="json"),
        req("DELETE", "/api/v1/torrents/\x7f1"),
        req("GET", "/api/v1/status", headers=[b"Authorization: Bearer 0123456789abcdef"]),
        req("GET", "/api/x"),
        req("POST", "/api/v1/login", b'{"token": "\x7fT"}', ct="json"),
        req("GET", "/api/v1/status", auth="cookie"),
    ]))
    put("api_request", "native_torrents", b"".join([
        req("GET", "/api/v1/torrents", auth="bearer"),
        req("GET", "/api/v1/torrents/\x7f0", auth="bearer"),
        req("GET", "/api/v1/torrents/nothex", auth="bearer"),
        req("PATCH", "/api/v1/torrents/\x7f1", b'{"upload_rate_limit": "10MiB", "upload_quota": 1000}',
            auth="bearer", ct="json"),
        req("PATCH", "/api/v1/torrents/\x7f1", b'{"upload_quota": -1}', auth="bearer", ct="json"),
        req("POST", "/api/v1/torrents/\x7f1/pause", auth="bearer"),
        req("POST", "/api/v1/torrents/\x7f1/pause", auth="bearer"),
        req("POST", "/api/v1/torrents/\x7f1/resume", auth="bearer"),
        req("POST", "/api/v1/torrents/\x7f2/recheck", auth="bearer"),
        req("POST", "/api/v1/torrents/\x7f0/reannounce", auth="bearer"),
        req("POST", "/api/v1/torrents/\x7f0/explode", auth="bearer"),
        req("DELETE", "/api/v1/torrents/\x7f0", auth="bearer"),
        req("DELETE", "/api/v1/torrents/\x7f1", auth="bearer"),
        req("GET", "/api/v1/settings", auth="bearer"),
        req("PATCH", "/api/v1/settings", b'{"upload_slots": 3, "upload_rate_limit": 1000, "upload_quota": "1G"}',
            auth="bearer", ct="json"),
        req("PATCH", "/api/v1/settings", b'{"upload_slots": 100000}', auth="bearer", ct="json"),
        req("GET", "/api/v1/status", auth="bearer"),
    ]))
    put("api_request", "native_add", b"".join([
        req("POST", "/api/v1/torrents?data=\x7fR", b"\x7fN", auth="bearer", ct="torrent"),
        req("POST", "/api/v1/torrents?data=/etc", b"\x7fN", auth="bearer", ct="torrent"),
        req("DELETE", "/api/v1/torrents/\x7f3", auth="bearer"),
        req("POST", "/api/v1/torrents", part(b"torrent", b"\x7fN", b"b.torrent") + part(b"data", b"\x7fR")
            + b"--B--\r\n", auth="bearer", ct="multipart"),
        req("POST", "/api/v1/torrents", b'{"path": "\x7fR/d"}', auth="bearer", ct="json"),
        req("POST", "/api/v1/torrents", b'{"path": "\x7fR/../.."}', auth="bearer", ct="json"),
        req("GET", "/api/v1/torrents", auth="bearer"),
    ]))
    put("api_request", "qbt_session", b"".join([
        req("POST", "/api/v2/auth/login", b"username=admin&password=\x7fT", ct="form"),
        req("GET", "/api/v2/app/version", auth="sid"),
        req("GET", "/api/v2/app/webapiVersion", auth="sid"),
        req("GET", "/api/v2/app/defaultSavePath", auth="sid"),
        req("GET", "/api/v2/transfer/info", auth="sid"),
        req("GET", "/api/v2/torrents/info?filter=all&sort=name&reverse=true&limit=2&offset=1", auth="sid"),
        req("GET", "/api/v2/torrents/info?hashes=\x7f0%7C\x7f1&filter=stopped", auth="sid"),
        req("GET", "/api/v2/torrents/properties?hash=\x7f0", auth="sid"),
        req("GET", "/api/v2/torrents/trackers?hash=\x7f2", auth="sid"),
        req("POST", "/api/v2/torrents/stop", b"hashes=\x7f0|\x7f1", auth="sid", ct="form"),
        req("POST", "/api/v2/torrents/start", b"hashes=all", auth="sid", ct="form"),
        req("POST", "/api/v2/torrents/add", part(b"torrents", b"\x7fN", b"b.torrent")
            + part(b"savepath", b"\x7fR") + part(b"stopped", b"true") + b"--B--\r\n", auth="sid", ct="multipart"),
        req("POST", "/api/v2/torrents/add", b"urls=magnet:%3Fxt", auth="sid", ct="form"),
        req("POST", "/api/v2/torrents/delete", b"hashes=all&deleteFiles=false", auth="sid", ct="form"),
        req("POST", "/api/v2/auth/logout", auth="sid"),
        req("GET", "/api/v2/app/version", auth="sid"),
    ]))
    put("api_request", "qbt_outsider", b"".join([
        req("POST", "/api/v2/auth/login", b"username=admin&password=x", ct="form"),
        req("GET", "/api/v2/auth/login"),
        req("GET", "/api/v2/torrents/info"),
        req("GET", "/api/v2/torrents/info?x=%zz"),
        req("PUT", "/api/v2/app/version"),
        req("GET", "/api/v2/app/version", auth="sid"),
    ]))
    put("api_request", "page_and_metrics", b"".join([
        req("GET", "/"), req("HEAD", "/index.html"), req("GET", "/?token=\x7fT"), req("GET", "/?token=bad"),
        req("GET", "/app.js"), req("GET", "/style.css"), req("GET", "/favicon.svg"), req("GET", "/favicon.ico"),
        req("POST", "/"), req("GET", "/nothing"), req("GET", "/metrics"), req("HEAD", "/healthz"),
        req("GET", "/readyz"), req("POST", "/metrics"), req("X", "http://h/api/v1/status"),
    ]))


wire_seeds()
peer_seeds()
tracker_seeds()
resume_seeds()
bencode_seeds()
config_seeds()
krpc_seeds()
tracker_server_seeds()
webseed_http_seeds()
api_request_seeds()
