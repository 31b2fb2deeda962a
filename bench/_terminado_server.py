"""terminado serving `head -c N /dev/zero` on /websocket: the baseline of bench/terminal.py.

python -m bench._terminado_server PORT MEGABYTES
"""

from __future__ import annotations

import sys

import terminado
import tornado.ioloop
import tornado.web


def main() -> None:
    port, megabytes = int(sys.argv[1]), int(sys.argv[2])
    manager = terminado.UniqueTermManager(
        shell_command=["sh", "-c", f"head -c {megabytes}M /dev/zero"]
    )
    app = tornado.web.Application(
        [(r"/websocket", terminado.TermSocket, {"term_manager": manager})]
    )
    app.listen(port, "127.0.0.1")
    print("ready", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
