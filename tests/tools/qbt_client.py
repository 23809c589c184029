#!/usr/bin/env python3
"""Drives uringseed's qBittorrent Web API subset with the PyPI client qbittorrent-api
(pinned in requirements-api.txt) for tests/qbt_api.rs, and prints one JSON object of what it
saw. Nothing is asserted here: the Rust test asserts.

  qbt_client.py add URL TOKEN_FILE TORRENT SAVE_PATH HASH
      bad password and no-login checks, login, versions, add, list, wait for seeding,
      properties, trackers, stop, start
  qbt_client.py delete URL TOKEN_FILE HASH TORRENT SAVE_PATH
      delete with deleteFiles=true (refused), then with false, and list again; add it again
      stopped (is_stopped) and delete it with hashes=all
"""

import json
import sys
import time

import qbittorrentapi
import requests

SEEDING = ("uploading", "stalledUP")


def client(url, password):
    return qbittorrentapi.Client(
        host=url,
        username="admin",
        password=password,
        REQUESTS_ARGS={"timeout": 10},
        VERIFY_WEBUI_CERTIFICATE=False,
    )


def err(e):
    return {"type": type(e).__name__, "text": str(e)[:300]}


def wait_state(c, h, want, limit=30.0):
    """Polls torrents_info until the state is in `want`; returns (state, seconds)."""
    t0 = time.monotonic()
    state = None
    while time.monotonic() - t0 < limit:
        got = c.torrents_info(torrent_hashes=h)
        state = got[0]["state"] if got else None
        if state in want:
            break
        time.sleep(0.2)
    return state, round(time.monotonic() - t0, 2)


def phase_add(url, token, torrent, save_path, h):
    out = {}
    bad = client(url, "not-the-token")
    try:
        bad.auth_log_in()
        out["bad_login"] = "accepted"
    except Exception as e:  # LoginFailed expected
        out["bad_login"] = err(e)
    r = requests.get(url + "/api/v2/app/version", timeout=10)
    out["no_login"] = {"status": r.status_code, "body": r.text}
    r = requests.get(url + "/api/v2/torrents/info", cookies={"SID": "00" * 16}, timeout=10)
    out["wrong_sid"] = {"status": r.status_code, "body": r.text}

    c = client(url, token)
    c.auth_log_in()
    out["sid_cookie"] = "SID" in c._http_session.cookies
    out["app_version"] = c.app_version()
    out["webapi_version"] = c.app_web_api_version()
    out["transfer_info"] = dict(c.transfer_info())
    with open(torrent, "rb") as f:
        out["add"] = c.torrents_add(torrent_files=f.read(), save_path=save_path)
    try:
        out["add_again"] = c.torrents_add(torrent_files=torrent, save_path=save_path)
    except Exception as e:  # 409 expected
        out["add_again"] = err(e)
    try:
        out["add_url"] = c.torrents_add(urls="magnet:?xt=urn:btih:" + "1" * 40)
    except Exception as e:
        out["add_url"] = err(e)
    try:
        out["add_garbage"] = c.torrents_add(torrent_files=b"not bencode", save_path=save_path)
    except Exception as e:
        out["add_garbage"] = err(e)
    listed = c.torrents_info(torrent_hashes=h)
    out["info"] = [dict(t) for t in listed]
    out["seeding_state"], out["seeding_after_s"] = wait_state(c, h, SEEDING)
    out["info_seeding"] = [dict(t) for t in c.torrents_info(torrent_hashes=h)]
    out["filter_seeding"] = [t["hash"] for t in c.torrents_info(status_filter="seeding")]
    out["filter_stopped_before"] = [t["hash"] for t in c.torrents_info(status_filter="stopped")]
    out["filter_downloading"] = [t["hash"] for t in c.torrents_info(status_filter="downloading")]
    out["properties"] = dict(c.torrents_properties(torrent_hash=h))
    out["trackers"] = [dict(t) for t in c.torrents_trackers(torrent_hash=h)]
    try:
        c.torrents_properties(torrent_hash="c" * 40)
        out["properties_unknown"] = "found"
    except Exception as e:  # NotFound404Error expected
        out["properties_unknown"] = err(e)

    c.torrents_stop(torrent_hashes=h)
    out["stopped_state"], _ = wait_state(c, h, ("stoppedUP", "pausedUP"), 10)
    out["filter_stopped"] = [t["hash"] for t in c.torrents_info(status_filter="stopped")]
    c.torrents_stop(torrent_hashes=h)  # again: a no-op, not an error
    c.torrents_start(torrent_hashes=h)
    out["started_state"], _ = wait_state(c, h, SEEDING)
    c.torrents.stop.all()
    out["stopped_all_state"], _ = wait_state(c, h, ("stoppedUP", "pausedUP"), 10)
    c.torrents.start.all()
    out["started_all_state"], _ = wait_state(c, h, SEEDING)
    sid = c._SID or ""
    c.auth_log_out()
    r = requests.get(url + "/api/v2/app/version", cookies={"SID": sid}, timeout=10)
    out["after_logout"] = r.status_code
    # qbittorrent-api's API-key mode sends the key as a bearer token, which uringseed's token is.
    k = qbittorrentapi.Client(host=url, api_key=token, REQUESTS_ARGS={"timeout": 10})
    out["api_key_hashes"] = [t["hash"] for t in k.torrents_info(torrent_hashes=h)]
    return out


def phase_delete(url, token, h, torrent, save_path):
    out = {}
    c = client(url, token)
    c.auth_log_in()
    try:
        c.torrents_delete(delete_files=True, torrent_hashes=h)
        out["delete_files"] = "accepted"
    except Exception as e:  # refused: uringseed never deletes data
        out["delete_files"] = err(e)
    out["still_there"] = [t["hash"] for t in c.torrents_info(torrent_hashes=h)]
    c.torrents_delete(delete_files=False, torrent_hashes=h)
    out["after_delete"] = [t["hash"] for t in c.torrents_info()]
    out["add_stopped"] = c.torrents_add(torrent_files=torrent, save_path=save_path, is_stopped=True)
    out["added_stopped_state"] = [t["state"] for t in c.torrents_info(torrent_hashes=h)]
    c.torrents_delete(delete_files=False, torrent_hashes="all")
    out["after_delete_all"] = [t["hash"] for t in c.torrents_info()]
    return out


def main():
    mode, url, token_file = sys.argv[1:4]
    with open(token_file) as f:
        token = f.read().strip()
    if mode == "add":
        out = phase_add(url, token, *sys.argv[4:7])
    elif mode == "delete":
        out = phase_delete(url, token, *sys.argv[4:7])
    else:
        sys.exit("mode: add or delete")
    out["client_version"] = qbittorrentapi.__version__ if hasattr(qbittorrentapi, "__version__") else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
