"""A web server for tests of the port relay, run inside a cell: standard library only (the
minimal image has nothing else). ``python3 cellserver.py PORT``.

GET /hello: "hello"; GET /headers: the request's headers and target as JSON; POST /echo: the
body's length and sha256; GET /stream: a chunked body of 5 pieces, 0.1 s apart; GET /ws: a
WebSocket echo (text and binary, fragments joined), with the subprotocol asked for chosen;
GET /bytes/N: N bytes; GET /connections: how many it accepted; GET /short: an answer cut
short. Anything else: 404 with the path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


CONNECTIONS = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a head and a body written apart: no 40 ms delayed ACK

    def log_message(self, *_: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        CONNECTIONS[0] += 1

    def reply(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "app=1; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        route = self.path.partition("?")[0]
        if route == "/hello":
            self.reply(200, b"hello")
        elif "/headers" in self.path:
            seen = {"target": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            self.reply(200, json.dumps(seen).encode(), "application/json")
        elif route == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                piece = f"piece {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
        elif route == "/ws":
            self.websocket()
        elif route == "/short":  # promises 100 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
        elif route == "/connections":
            self.reply(200, str(CONNECTIONS[0]).encode())
        elif route.startswith("/bytes/"):  # GET /bytes/N: N bytes, for throughput
            self.send_bytes(int(route.removeprefix("/bytes/")))
        else:
            self.reply(404, f"no such page: {self.path}".encode())

    def send_bytes(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"x" * (1 << 20)
        while size > 0:
            self.wfile.write(block[:size])
            size -= len(block)

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self.chunked_body()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        digest = hashlib.sha256(body).hexdigest()
        self.reply(200, json.dumps({"bytes": len(body), "sha256": digest}).encode())

    def chunked_body(self) -> bytes:
        parts = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(parts)

    def websocket(self) -> None:
        accept = base64.b64encode(
            hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest()
        ).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        if wanted := self.headers.get("Sec-WebSocket-Protocol"):
            self.send_header("Sec-WebSocket-Protocol", wanted.split(",")[0].strip())
        self.end_headers()
        self.wfile.flush()
        message, opcode = b"", 0
        while True:
            fin, op, data = self.frame()
            if op == 8:  # close: answer it, with its code
                self.send_frame(8, data[:2])
                return
            if op == 9:
                self.send_frame(10, data)
                continue
            opcode = op or opcode
            message += data
            if fin:
                self.send_frame(opcode, message)
                message = b""

    def frame(self) -> tuple[bool, int, bytes]:
        head = self.rfile.read(2)
        if len(head) < 2:
            return True, 8, b""
        fin, op, size = head[0] >> 7, head[0] & 15, head[1] & 127
        if size == 126:
            size = struct.unpack("!H", self.rfile.read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
        return bool(fin), op, data

    def send_frame(self, op: int, data: bytes) -> None:
        size = len(data)
        if size < 126:
            head = struct.pack("!BB", 0x80 | op, size)
        elif size < 65536:
            head = struct.pack("!BBH", 0x80 | op, 126, size)
        else:
            head = struct.pack("!BBQ", 0x80 | op, 127, size)
        self.wfile.write(head + data)
        self.wfile.flush()


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
