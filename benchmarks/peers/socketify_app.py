"""The do-nothing ASGI app on socketify: `python socketify_app.py PORT WORKERS` (127.0.0.1)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from noop_app import app
from socketify import ASGI, AppListenOptions

if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    server = ASGI(app, websocket=False, lifespan=False)
    server.listen(AppListenOptions(port=port, host="127.0.0.1"), lambda config: None).run(workers=workers)
