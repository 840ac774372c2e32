"""The hermetic internet's web server, run inside its network namespace: HTTP on 80, HTTPS on
443 (a certificate for every test name, from the test's own CA). Each request's headers go,
as one JSON line, to the log the test reads; the answer is ``ok <path>``, or N bytes for
``/bytes/N``. Standard library only."""

from __future__ import annotations

import http.server
import json
import ssl
import sys
import threading
from pathlib import Path


def handler(log_path: str) -> type[http.server.BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = self.rfile.read(length) if length else b""
            entry = {
                "path": self.path,
                "host": self.headers.get("Host"),
                "headers": dict(self.headers.items()),
                "body_bytes": len(received),
            }
            with lock, Path(log_path).open("a") as log:
                log.write(json.dumps(entry) + "\n")
            if self.path.startswith("/bytes/"):
                size = int(self.path.split("/")[2])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"x" * 65536
                while size > 0:
                    self.wfile.write(chunk[: min(size, len(chunk))])
                    size -= len(chunk)
                return
            body = f"ok {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    address, cert, key, log_path = sys.argv[1:5]
    servers = []
    for port, tls in ((80, False), (443, True)):
        server = http.server.ThreadingHTTPServer((address, port), handler(log_path))
        server.handle_error = lambda *_: None  # type: ignore[method-assign]  # clients hang up
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    main()
