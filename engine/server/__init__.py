"""The engine process: serves the op registry over JSON-RPC (stdio, Unix socket, TCP with a token).

`core.Engine` dispatches requests; `jobs.JobManager` runs long ops on worker threads and broadcasts their
events; `peer.Peer` is one connected client; `listen` holds the transports; `daemon` starts, stops and
finds a background engine; `attach` bridges stdio to it (the far end of `ssh host difflens engine attach`).
"""
