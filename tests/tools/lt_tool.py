#!/usr/bin/python3
"""libtorrent helper for uringseed's tests (Debian python3-libtorrent).

  lt_tool.py create PATH OUT [v1|hybrid]   make a torrent of PATH with libtorrent; print its v1 info-hash
  lt_tool.py info TORRENT                  print the info-hash and piece hashes libtorrent reads
  lt_tool.py rehash TORRENT PATH           hash PATH's data with libtorrent at TORRENT's piece length,
                                           print those piece hashes, then add TORRENT to a session over
                                           the data and print its state after a full check
Output is one "key value" pair per line. No network: DHT, LSD, UPnP, NAT-PMP off, no listening.
"""
import os
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


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "create":
        create(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "v1")
    elif cmd == "info":
        info(sys.argv[2])
    elif cmd == "rehash":
        rehash(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)
