#!/usr/bin/env node
// A real BitTorrent tracker (npm bittorrent-tracker, HTTP + UDP) on loopback for interop tests.
//
//   node tests/tools/tracker.js PORT        (PORT 0 = pick free ports)
//
// Prints exactly one line on stdout once every socket is bound:
//   listening http=HTTP_PORT udp=UDP_PORT
// then runs until killed (SIGTERM/SIGINT close it cleanly). HTTP announce URL:
// http://127.0.0.1:HTTP_PORT/announce, UDP: udp://127.0.0.1:UDP_PORT; /stats.json shows the swarms.
// Every announce is logged on stderr:
//   "announce INFOHASH_HEX IP:PORT EVENT left=N type=http|udp uploaded=N downloaded=N"
// (uploaded/downloaded as the client reported them).
//
// Only bittorrent-tracker/server.js is imported: the package's CLI (bin/cmd.js) crashes at import
// when installed with --ignore-scripts. The WebSocket tracker is off.
'use strict'

const path = require('path')

function usage (msg) {
  if (msg) process.stderr.write(`tracker.js: ${msg}\n`)
  process.stderr.write('usage: node tracker.js PORT   (0 = pick free ports)\n')
  process.exit(2)
}

async function main () {
  const args = process.argv.slice(2)
  if (args.length !== 1 || !/^\d+$/.test(args[0])) usage()
  const port = Number(args[0])
  if (port > 65535) usage('port out of range')

  // server.js is an ES module (bittorrent-tracker >= 10); load it from this directory's node_modules.
  const mod = await import(path.join(__dirname, 'node_modules', 'bittorrent-tracker', 'server.js'))
  const Server = mod.default

  // interval: tell clients to re-announce every 10 s (tests are short; default is 10 min).
  const server = new Server({ http: true, udp: true, ws: false, interval: 10000 })

  server.on('error', err => {
    process.stderr.write(`tracker.js: error: ${err.message}\n`)
    process.exit(1)
  })
  server.on('warning', err => {
    process.stderr.write(`tracker.js: warning: ${err.message}\n`)
  })
  const log = name => (addr, params) => {
    process.stderr.write(`announce ${params.info_hash} ${addr} ${params.event || name} left=${params.left} type=${params.type} uploaded=${params.uploaded} downloaded=${params.downloaded}\n`)
  }
  for (const ev of ['start', 'complete', 'update', 'stop', 'pause']) server.on(ev, log(ev))

  server.on('listening', () => {
    const httpPort = server.http.address().port
    const udpPort = server.udp4.address().port
    process.stdout.write(`listening http=${httpPort} udp=${udpPort}\n`)
  })

  // With PORT 0, HTTP and UDP (and udp6) each get their own free port. udp6 binds ::1 so that
  // nothing listens beyond loopback.
  server.listen(port, { http: '127.0.0.1', udp: '127.0.0.1', udp6: '::1' })

  const stop = () => {
    server.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch(err => {
  process.stderr.write(`tracker.js: ${err.stack || err}\n`)
  process.exit(1)
})
