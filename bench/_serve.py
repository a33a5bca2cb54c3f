"""Runs a comparison app of bench/_apps.py on uvicorn exactly as ``plughost serve`` runs
plughost: uvloop, plughost's HTTP protocol (plughost.serving.protocol.GatewayHttpProtocol: uvicorn's
httptools protocol, whose direct path only plughost's app can use, so for these apps it is
uvicorn's own code), one worker, no access log, no Server header.

    python bench/_serve.py _apps:bare 8000
"""

from __future__ import annotations

import sys

import uvicorn

from plughost.serving.protocol import GatewayHttpProtocol

if __name__ == "__main__":
    import gc

    gc.collect()
    gc.freeze()  # what plughost does at start-up: the imports stay out of the collector's way
    app, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=GatewayHttpProtocol,
        workers=1,
        access_log=False,
        server_header=False,
        log_level="warning",
        lifespan="on",
    )
