"""Run inside the container (`podman exec -i ... python - < kernel_probe.py`): `1+1` in a new
kernel of the embedded Kernel Gateway that jupybot started there, through the gateway's REST and
websocket API, with the token jupybot gave it (read from the gateway's environment: the probe
runs as jupybot's user). Prints the result's text/plain."""

import json
import os
import re
import urllib.request
import uuid
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect


def gateway() -> tuple[str, str]:
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        token = [e[len(b"KG_AUTH_TOKEN=") :] for e in environ if e.startswith(b"KG_AUTH_TOKEN=")]
        ports = [m for a in cmdline if (m := re.match(rb"--KernelGatewayApp.port=(\d+)$", a))]
        if token and ports and b"kernel_gateway" in cmdline:
            return f"127.0.0.1:{ports[0].group(1).decode()}", token[0].decode()
    raise SystemExit("no embedded Kernel Gateway process found")


async def execute(where: str, headers: dict[str, str], kernel: str) -> str:
    ws = await websocket_connect(
        HTTPRequest(f"ws://{where}/api/kernels/{kernel}/channels", headers=headers)
    )
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": "execute_request",
        "username": "probe",
        "session": uuid.uuid4().hex,
        "version": "5.3",
    }
    content = {
        "code": "1+1",
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
    }
    request = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
    ws.write_message(json.dumps({**request, "channel": "shell"}))
    while True:
        raw = await ws.read_message()
        assert raw is not None, "the kernel's websocket closed"
        message = json.loads(raw)
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "execute_result":
            return str(message["content"]["data"]["text/plain"])
        if message["msg_type"] == "error":
            raise SystemExit("\n".join(message["content"]["traceback"]))


def main() -> None:
    where, token = gateway()
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    start = urllib.request.Request(
        f"http://{where}/api/kernels", data=b'{"name": "python3"}', headers=headers
    )
    kernel = json.load(urllib.request.urlopen(start, timeout=120))["id"]
    try:
        print(IOLoop.current().run_sync(lambda: execute(where, headers, kernel), timeout=180))
    finally:
        stop = urllib.request.Request(
            f"http://{where}/api/kernels/{kernel}", headers=headers, method="DELETE"
        )
        urllib.request.urlopen(stop, timeout=60)


if __name__ == "__main__":
    os.umask(0o077)
    main()
