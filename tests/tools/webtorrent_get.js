#!/usr/bin/env node
// Download a torrent from one given peer with the webtorrent@1 library (a real client).
//
//   node tests/tools/webtorrent_get.js TORRENT_FILE|MAGNET OUT_DIR PEER_HOST:PEER_PORT|- TIMEOUT_SECS
//
// No DHT, no LSD, no trackers, no web seeds, no uTP; the only peer is the one given (ut_pex cannot
// be switched off in webtorrent@1, but it only learns peers from that peer). A magnet link
// (`magnet:?...`) in place of the file: the metadata comes from the peers (BEP 9). PEER `-`
// : no peer is given; the tracker client is on and announces to the magnet's `tr` trackers (or
// the torrent file's announce list), the only source of peers. WT_DOWNLOAD_RATE=BYTES/S caps the
// download; WT_LINGER_SECS=N stays N seconds as a seed once done (SIGTERM ends it early). Files land in
// OUT_DIR/<torrent name>/... for a multi-file torrent, OUT_DIR/<name> for a single file.
// The client's own listening socket is bound to 127.0.0.1 (random port).
// Progress goes to stderr once a second. Exit 0 once 'done' fired (every piece verified and written)
// and the client closed its files; 1 on error or timeout; 2 on bad arguments.
'use strict'

const fs = require('fs')
const net = require('net')
const path = require('path')

function usage (msg) {
  if (msg) process.stderr.write(`webtorrent_get.js: ${msg}\n`)
  process.stderr.write('usage: node webtorrent_get.js TORRENT_FILE|MAGNET OUT_DIR PEER_HOST:PEER_PORT|- TIMEOUT_SECS\n')
  process.exit(2)
}

const args = process.argv.slice(2)
if (args.length !== 4) usage()
const [torrentFile, outDir, peer, timeoutArg] = args
const timeoutS = Number(timeoutArg)
if (!(timeoutS > 0)) usage('TIMEOUT_SECS must be a positive number')
const isMagnet = torrentFile.startsWith('magnet:')
const viaTrackers = peer === '-'
if (!viaTrackers && !/^(\[[0-9a-fA-F:.]+\]|[^:]+):\d+$/.test(peer)) usage('peer must be HOST:PORT (or [IPv6]:PORT)')

// webtorrent@1 listens for incoming peers with tcpServer.listen(port) on every interface; keep it
// on loopback. (Only listen(number[, callback]) calls are changed.)
const origListen = net.Server.prototype.listen
net.Server.prototype.listen = function (...a) {
  if (typeof a[0] === 'number' && typeof a[1] !== 'string') a.splice(1, 0, '127.0.0.1')
  return origListen.apply(this, a)
}

const WebTorrent = require(path.join(__dirname, 'node_modules', 'webtorrent'))

const t0 = Date.now()
const log = msg => process.stderr.write(`[webtorrent ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`)
let finished = false
let client = null

function finish (code, msg) {
  if (finished) return
  finished = true
  log(msg)
  // Close the client (and its open files) before exiting; bounded.
  const hard = setTimeout(() => process.exit(code), 5000)
  hard.unref()
  try {
    client.destroy(err => {
      if (err) log(`destroy: ${err.message || err}`)
      process.exit(code)
    })
  } catch (err) {
    log(`destroy: ${err.message || err}`)
    process.exit(code)
  }
}

let torrentId = torrentFile
if (!isMagnet) {
  try {
    torrentId = fs.readFileSync(torrentFile)
  } catch (err) {
    usage(`cannot read ${torrentFile}: ${err.message}`)
  }
}
fs.mkdirSync(outDir, { recursive: true })

// WT_DOWNLOAD_RATE=BYTES/S caps the download (so that it lasts a while).
const rate = Number(process.env.WT_DOWNLOAD_RATE || 0)
const opts = { dht: false, lsd: false, tracker: viaTrackers, webSeeds: false, utp: false }
if (rate > 0) opts.downloadLimit = rate
client = new WebTorrent(opts)
client.on('listening', () => log(`listening ${client.torrentPort}`))
client.on('error', err => finish(1, `client error: ${err.message || err}`))

const timer = setTimeout(() => finish(1, `timeout after ${timeoutS}s`), timeoutS * 1000)

const torrent = client.add(torrentId, { path: outDir })
torrent.on('error', err => finish(1, `torrent error: ${err.message || err}`))
torrent.on('warning', err => log(`warning: ${err.message || err}`))
torrent.on('infoHash', () => log(`infohash ${torrent.infoHash}`))
torrent.on('metadata', () => log(`metadata: ${torrent.name}, ${torrent.files.length} files`))
torrent.on('ready', () => {
  log(`ready: ${torrent.name}, ${torrent.files.length} files, ${torrent.length} bytes, ` +
      `${torrent.pieces.length} pieces of ${torrent.pieceLength}`)
})
torrent.on('wire', (wire, addr) => log(`connected to ${addr} (peer id ${wire.peerId})`))
torrent.on('done', () => {
  clearTimeout(timer)
  const secs = (Date.now() - t0) / 1000
  const msg = `done: ${torrent.downloaded} bytes downloaded in ${secs.toFixed(2)}s`
  // WT_LINGER_SECS=N: stay in the swarm as a seed N seconds first (SIGTERM ends it early).
  const linger = Number(process.env.WT_LINGER_SECS || 0)
  if (!(linger > 0)) return finish(0, msg)
  log(`${msg}; seeding ${linger}s`)
  const end = () => finish(0, 'linger over')
  process.on('SIGTERM', end)
  setTimeout(end, linger * 1000)
})

// addPeer before 'infoHash'/'ready' is fine: webtorrent queues it until discovery starts.
if (viaTrackers) {
  log(`peers from the magnet's trackers only, path ${outDir}`)
} else {
  if (!torrent.addPeer(peer)) log(`addPeer(${peer}) refused`)
  log(`added peer ${peer}, path ${outDir}`)
}

const progress = setInterval(() => {
  if (finished) return
  log(`progress ${(torrent.progress * 100).toFixed(1)}% ${torrent.downloaded} B ` +
      `down ${Math.round(torrent.downloadSpeed)} B/s peers ${torrent.numPeers}`)
}, 1000)
progress.unref()
