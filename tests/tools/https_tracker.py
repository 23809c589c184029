#!/usr/bin/python3
"""A minimal HTTPS tracker for uringseed's tests: https_tracker.py CERT KEY

Listens on 127.0.0.1 (a free port), prints "listening PORT", then for every request prints
"request METHOD PATH" (the whole announce line) on stdout and answers a bencoded announce reply
with no peers (interval 1800 s). Runs until killed. Only the standard library (http.server,
ssl).
"""
import http.server
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("request", self.command, self.path, flush=True)
        body = b"d8:intervali1800e5:peers0:e"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))


def main():
    cert, key = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
