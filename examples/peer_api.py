"""Two peers over an embedded relay: a JSON API in the tunnel, a request
with headers and a body, what a mistake looks like, and the counters.

    python examples/peer_api.py
"""

import http.server
import json

import spanza
from spanza.errors import NoRouteError
from spanza.scenario import Peer, connect


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        item = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = json.dumps({"id": 1, **item}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


with (
    spanza.DerpServer() as relay,
    Peer(relay.url, "10.50.0.1/24") as server,
    Peer(relay.url, "10.50.0.2/24", mode="gateway") as client,
):
    try:
        client.request("GET", "http://10.50.0.1/")
    except NoRouteError as e:
        print(f"before connect(): {e}")
    connect(server, client)
    server.serve_http(8080, Api)
    r = client.request("POST", "http://10.50.0.1:8080/items", json={"name": "spanza"})
    print(f"POST -> {r.status} {r.headers['content-type']}: {r.json()}")
    print(f"ping: {client.ping('10.50.0.1')[0] * 1000:.2f} ms")
    print("client counters:", json.dumps(client.stats(), indent=1)[:400], "...")
    assert r.status == 201 and r.json() == {"id": 1, "name": "spanza"}
    print("ok")
