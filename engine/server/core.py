"""The engine: dispatches each request to a built-in method or an op from the registry.

Long ops become jobs (answer `{"job": id}` at once, then notifications); every request is served on a thread
pool so that a slow one never blocks the reader. Bad messages get JSON-RPC errors and the engine keeps serving.

The op modules (and torch with them) are imported on a thread of their own, at start (`preload`, a long-lived
engine) or when the first request needs them (a private engine): a request whose answer was kept whole
(`engine.answers`) is answered without them, and without competing with their import for the interpreter; so
are the light ops (`ops.LIGHT`: runs, boards, organisms), loaded at start."""

from __future__ import annotations

import hmac
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from engine import ops
from engine.answers import memo
from engine.jobs import JobContext
from engine.ops import REGISTRY, Op
from engine.protocol import methods, wire
from engine.server.failures import checked_result, error_for
from engine.server.job_queue import JobManager
from engine.server.peer import FLUSH_S, Peer

log = logging.getLogger("difflens.engine")

Handler = Callable[[Peer, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Reply:
    """What a pooled request sends back, and what to do once it is sent (start the job it names, keep the
    answer)."""

    value: dict[str, Any]
    then: Callable[[], None] | None = None


class Engine:
    """Shared by every transport and client of this process."""

    def __init__(self, *, workers: int = 1, where: str = "", preload: bool = True) -> None:
        self.where = where
        self.started = time.time()
        self.op_errors: dict[str, str] = {}
        self._ops_loaded = threading.Event()
        self._ops_loader: threading.Thread | None = None
        self._loader_lock = threading.Lock()
        ops.load_light()
        if preload:
            self._start_loading_ops()
        self.jobs = JobManager(workers)
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="op")
        self._peers: set[Peer] = set()
        self._lock = threading.Lock()
        self._builtins: dict[str, Handler] = {
            wire.ENGINE_STATUS: self._status, wire.ENGINE_METHODS: self._methods, wire.ENGINE_HELLO: self._hello,
            wire.ENGINE_SHUTDOWN: self._shutdown, wire.ENGINE_AUTH: self._auth_again,
            wire.JOB_LIST: lambda peer, params: {"jobs": self.jobs.list()},
            wire.JOB_CANCEL: lambda peer, params: self.jobs.cancel(str(_job_id(params))),
            wire.JOB_RESULT: lambda peer, params: self.jobs.get(str(_job_id(params))).summary(full=True),
            wire.JOB_SUBSCRIBE: lambda peer, params: self.jobs.subscribe(peer, _job_id(params, required=False)),
        }

    # ---- clients ----

    def attach(self, peer: Peer) -> None:
        with self._lock:
            self._peers.add(peer)

    def detach(self, peer: Peer) -> None:
        with self._lock:
            self._peers.discard(peer)
        self.jobs.detach(peer)

    # ---- dispatch ----

    def handle(self, peer: Peer, line: bytes) -> None:
        """Serve one line from `peer` (called on its reader thread; never raises)."""
        try:
            message = wire.decode(line)
        except wire.ProtocolError as exc:
            peer.send(wire.error(exc.id, exc.code, exc.message, exc.data))
            return
        id_ = message.get("id")
        method = message.get("method")
        params = message.get("params", {})
        if (message.get("jsonrpc") != wire.JSONRPC or not isinstance(method, str)
                or not isinstance(id_, str | int | None) or isinstance(id_, bool)):
            peer.send(wire.error(id_ if isinstance(id_, str | int) else None, wire.INVALID_REQUEST,
                                     "invalid request: need jsonrpc '2.0', a string method and an id"))
            return
        if "id" not in message:
            return  # a client notification: nothing is expected of the engine
        if not peer.authenticated:
            self._authenticate(peer, id_, method, params)
            return
        if params is None:
            params = {}
        if not isinstance(params, dict):
            peer.send(wire.error(id_, wire.INVALID_PARAMS, "params must be a JSON object"))
            return
        if self.stopping.is_set():
            peer.send(wire.error(id_, wire.SHUTTING_DOWN, "the engine is shutting down"))
            return
        if method in self._builtins:
            self._submit(peer, id_, lambda: Reply(self._builtins[method](peer, params)))
        else:
            self._submit(peer, id_, lambda: self._serve_op(peer, method, params))

    def _serve_op(self, peer: Peer, method: str, params: dict[str, Any]) -> Reply:
        """A kept answer if there is one (no op needed), else the op: run here if short, queued as a job if long
        (after its submission check); a fresh complete answer is kept for next time."""
        ticket = memo.ticket(method, params)
        if ticket is not None and (answer := memo.recall(ticket)) is not None:
            log.info("%s answered from the memo", method)
            return self._recalled(peer, method, params, answer)
        op = self._op(method)
        keep = (lambda value: memo.keep(ticket, value)) if ticket is not None else None
        if not op.long:
            value = op.fn(params, JobContext())
            return Reply(value, then=(lambda: keep(value)) if keep is not None else None)
        if op.check is not None:
            op.check(params)  # the op's refusal is the answer; no job is made
        job = self.jobs.create(op, params, peer, peer.label, on_done=keep)
        return Reply({"job": job.id}, then=lambda: self.jobs.start(job))

    def _recalled(self, peer: Peer, method: str, params: dict[str, Any], answer: dict[str, Any]) -> Reply:
        """A kept answer, given as the method gives it: as is, or as a job that is done at once."""
        if not methods.BY_NAME[method].long:
            return Reply(answer)
        job = self.jobs.create(Op(name=method, fn=lambda params, ctx: answer, long=True, doc="a kept answer"),
                               params, peer, peer.label)
        return Reply({"job": job.id}, then=lambda: self.jobs.finish_now(job))

    def _op(self, method: str) -> Op:
        """The registered op: a light one (`ops.LIGHT`) at once, the others once the op modules are loaded."""
        if (op := REGISTRY.get(method)) is None:
            self._wait_for_ops()
            op = REGISTRY.get(method)
        if op is None:
            problem = f"unknown method {method!r}"
            raise wire.ProtocolError(wire.METHOD_NOT_FOUND, problem, {"problem": problem, "fix": "see engine.methods"})
        return op

    def _submit(self, peer: Peer, id_: int | str | None, call: Callable[[], Reply]) -> None:
        def run() -> None:
            then = None
            try:
                reply = call()
                peer.send(wire.result(id_, checked_result(reply.value)))
                then = reply.then
            except BaseException as exc:  # every failure is answered, the engine serves on
                err = error_for(exc)
                peer.send(wire.error(id_, err["code"], err["message"], err.get("data")))
            finally:
                peer.end()
            if then is not None:
                then()

        peer.begin()
        try:
            self._pool.submit(run)
        except RuntimeError:  # pool shut down: the engine is stopping
            peer.end()
            peer.send(wire.error(id_, wire.SHUTTING_DOWN, "the engine is shutting down"))

    def _authenticate(self, peer: Peer, id_: int | str | None, method: str, params: Any) -> None:
        token = params.get("token") if isinstance(params, dict) else None
        if method == wire.ENGINE_AUTH and isinstance(token, str) and peer.token is not None \
                and hmac.compare_digest(token.encode(), peer.token.encode()):
            peer.authenticated = True
            peer.send(wire.result(id_, {"ok": True}))
            return
        log.warning("client %s refused: no valid token", peer.label)
        peer.send(wire.error(id_, wire.UNAUTHORIZED, "a valid token is required",
                                 {"problem": "the engine refused the connection: no valid token",
                                  "fix": "send engine.auth with the token from the engine's 0600 token file"}))
        peer.close()

    # ---- built-in methods ----

    def _start_loading_ops(self) -> None:
        with self._loader_lock:
            if self._ops_loader is None:
                self._ops_loader = threading.Thread(target=self._load_ops, name="ops-loader", daemon=True)
                self._ops_loader.start()

    def _load_ops(self) -> None:
        try:
            self.op_errors = _load_ops()
        finally:
            self._ops_loaded.set()

    def _wait_for_ops(self) -> None:
        self._start_loading_ops()
        self._ops_loaded.wait()

    def _status(self, peer: Peer, params: dict[str, Any]) -> dict[str, Any]:
        """A private engine that has only given kept answers has loaded no ops (nor torch): it says so
        (`ops_loaded` false, no device or models yet) rather than load them to answer."""
        with self._lock:
            clients = len(self._peers - {peer})  # the others: the one asking is not using the engine
        out = {"pid": os.getpid(), "where": self.where, "python": sys.executable, "started": self.started,
               "uptime_s": round(time.time() - self.started, 1), "clients": clients, "jobs": self.jobs.list(),
               "ops_loaded": False, "device": "", "models": [], "op_errors": {}}
        if self._ops_loader is None:
            return out
        self._ops_loaded.wait()
        from engine.models.cache import MODELS  # imports torch: the ops have already

        return out | {"ops_loaded": True, "device": _device(), "models": MODELS.loaded(), "op_errors": self.op_errors}

    def _hello(self, peer: Peer, params: dict[str, Any]) -> dict[str, Any]:
        """A first round trip that needs nothing loaded: the engine is up and speaks the protocol."""
        return {"pid": os.getpid(), "where": self.where, "ops_loaded": self._ops_loaded.is_set()}

    def _methods(self, peer: Peer, params: dict[str, Any]) -> dict[str, Any]:
        self._wait_for_ops()
        listed = [{"name": op.name, "long": op.long, "doc": op.doc} for op in sorted(REGISTRY.values(),
                                                                                       key=_op_name)]
        listed += [{"name": name, "long": False, "doc": "built-in", "builtin": True} for name in self._builtins]
        return {"methods": listed}

    def _shutdown(self, peer: Peer, params: dict[str, Any]) -> dict[str, Any]:
        threading.Timer(0.2, self.stop).start()  # answer first, then stop
        return {"ok": True, "cancelled": self.jobs.active()}

    def _auth_again(self, peer: Peer, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    # ---- lifecycle ----

    def stop(self) -> None:
        """Stop serving: cancel running jobs; the transport's main loop notices `stopping` and exits."""
        if self.stopping.is_set():
            return
        log.info("engine stopping")
        self.stopping.set()
        self.jobs.stop()

    def wait(self) -> None:
        """Block the main thread until `stop` (signals still get through), then wind down."""
        while not self.stopping.wait(0.5):
            pass
        self.jobs.join(timeout=10)
        with self._lock:
            peers = list(self._peers)
        for peer in peers:
            peer.close()
        for peer in peers:
            peer.wait_closed(FLUSH_S)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _job_id(params: dict[str, Any], required: bool = True) -> str | None:
    value = params.get("job")
    if value is None and not required:
        return None
    if not isinstance(value, str):
        problem = "parameter 'job' must be a job id string"
        raise wire.ProtocolError(wire.INVALID_PARAMS, problem,
                                     {"problem": problem, "fix": "pass a job id from job.list"})
    return value


def _load_ops() -> dict[str, str]:
    """Every op module imported; the ones that failed, by module (a copy: the engine reports them)."""
    ops.load_all()
    return dict(ops.LOAD_ERRORS)


def _op_name(op: Op) -> str:
    return op.name


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
    return "cpu"
