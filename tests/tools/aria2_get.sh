#!/bin/sh
# Download a torrent with aria2c from seeds it finds only through an HTTP tracker on loopback.
#
#   tests/tools/aria2_get.sh TORRENT_FILE|MAGNET OUT_DIR TRACKER_HTTP_URL|- TIMEOUT_SECS [EXTRA_ARIA2C_ARGS...]
#
# A magnet link (`magnet:?xt=urn:btih:...&tr=...`) in place of the file: aria2 fetches the
# metadata from the peers its trackers return (BEP 9, kept in memory), then downloads the files
# (--bt-metadata-only=false, --follow-torrent's default). TRACKER_HTTP_URL `-`: no tracker is
# added, only the torrent's or the magnet's own (`tr`) are used.
# aria2 cannot be handed a peer address: announce the seed to the tracker first (the seed itself,
# or tests/tools/announce.py on its behalf). TRACKER_HTTP_URL is added to the torrent's own
# trackers (--bt-tracker), so the .torrent may name no tracker or a dead one. aria2 ignores UDP
# trackers while DHT is off: use the http:// URL.
# DHT, LSD and PEX are off; sockets bound to 127.0.0.1, IPv6 off; no user config file read; exits
# as soon as the download is complete and verified (--seed-time=0). Files land in
# OUT_DIR/<torrent name>/... (multi-file) or OUT_DIR/<name> (single file).
# EXTRA_ARIA2C_ARGS are appended, e.g. --listen-port=46883 (default: aria2's 6881-6999, first free)
# or --log=FILE --log-level=info.
# Exit status: aria2c's (0 = complete; see aria2c(1) EXIT STATUS), 124 when TIMEOUT_SECS ran out,
# 2 on bad arguments.
set -u
if [ $# -lt 4 ]; then
    echo "usage: $0 TORRENT_FILE|MAGNET OUT_DIR TRACKER_HTTP_URL|- TIMEOUT_SECS [EXTRA_ARIA2C_ARGS...]" >&2
    exit 2
fi
torrent=$1 out=$2 tracker=$3 secs=$4
shift 4
case $secs in ''|*[!0-9]*) echo "$0: TIMEOUT_SECS must be a whole number" >&2; exit 2;; esac
command -v aria2c >/dev/null || { echo "$0: aria2c not found (apt-get install aria2)" >&2; exit 2; }

mkdir -p "$out" || exit 2
if [ "$tracker" = - ]; then
    set -- --bt-metadata-only=false "$@"
else
    set -- --bt-metadata-only=false --bt-tracker="$tracker" "$@"
fi
# --kill-after: aria2 normally stops within a second of SIGTERM; SIGKILL it if it does not.
exec timeout --kill-after=5 "$secs" aria2c \
    --no-conf=true \
    --dir="$out" \
    --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --interface=127.0.0.1 --disable-ipv6=true \
    --seed-time=0 \
    --bt-stop-timeout="$secs" \
    --bt-tracker-connect-timeout=10 --bt-tracker-timeout=10 \
    --bt-save-metadata=false --bt-seed-unverified=false \
    --check-integrity=false --file-allocation=none \
    --allow-overwrite=true --auto-file-renaming=false \
    --summary-interval=0 --console-log-level=warn --download-result=full \
    "$@" \
    "$torrent"
