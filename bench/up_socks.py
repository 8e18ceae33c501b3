"""`spanza up`'s two ways into the tunnel, side by side: curl downloads a
file through the --forward and through the SOCKS5 proxy (spliced in C
after the handshake), and straight from the OS server for reference.

    .venv/bin/python bench/up_socks.py [MiB]      (default 64)

The far end is a Spanza device in this process whose tunnel port 80 is
exposed to an OS HTTP server (sendfile); both sides run on one machine,
so the figures compare the paths, not a network.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spanza import Device
from spanza.keys import PrivateKey
from tests.integration._up import start_up

RUNS = 3


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def curl_mbps(*args: str) -> float:
    """Best of RUNS downloads, in MB/s (curl's own average speed)."""
    best = 0.0
    for _ in range(RUNS):
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{speed_download}",
                "-m",
                "120",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        best = max(best, float(out) / 1e6)
    return best


def main() -> int:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    if shutil.which("curl") is None:
        print("needs curl")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        with open(root / "www" / "blob", "wb") as f:
            f.truncate(mib << 20)
        handler = partial(_Quiet, directory=str(root / "www"))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        mine, far = PrivateKey.generate(), PrivateKey.generate()
        with Device(private_key=far, listen_port=0, address="10.8.0.2/24") as dev:
            dev.add_peer(mine.public_key, allowed_ips=["10.8.0.1/32"])
            dev.expose(80, srv.server_address)
            conf = root / "wg0.conf"
            conf.write_text(
                f"[Interface]\nPrivateKey = {mine.base64}\nAddress = 10.8.0.1/24\n\n[Peer]\n"
                f"PublicKey = {dev.public_key.base64}\nAllowedIPs = 10.8.0.2/32\n"
                f"Endpoint = 127.0.0.1:{dev.listen_port}\n"
            )
            up = start_up(conf, "10.8.0.2:80")
            try:
                host, port = srv.server_address[:2]
                curl_mbps(f"http://{up.forward}/blob")  # warm-up: handshake, windows, caches
                print(f"{mib} MiB over HTTP, best of {RUNS} after a warm-up (MB/s):")
                print(f"  OS server directly      {curl_mbps(f'http://{host}:{port}/blob'):8.1f}")
                print(f"  spanza up --forward     {curl_mbps(f'http://{up.forward}/blob'):8.1f}")
                print(f"  spanza up --socks5      {curl_mbps('--socks5', up.socks5, 'http://10.8.0.2/blob'):8.1f}")
            finally:
                up.stop()
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
