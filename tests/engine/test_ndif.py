"""NDIF backend and multi-GPU placement, offline.

The remote path is checked at nnsight's narrowest seam: with DIFFLENS_NDIF_SIMULATE=1 every trace goes
through `remote="local"` (LocalSimulationBackend: serialize the request as for NDIF, deserialize it with
this project's modules hidden, run it here). NDIF's failures are checked by faking the HTTP and websocket
layer under nnsight's real `RemoteBackend`. Multi-GPU plans are faked by monkeypatching device counts and
free memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.errors import UserError
from engine.jobs import JobContext
from engine.models.device import resolve_placement
from engine.models.loading import LoadedModel, load_model
from engine.models.specs import parse_spec
from engine.ndif.ndif_errors import ndif_errors

GIB = 2**30


@pytest.fixture
def simulate(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Route remote traces through nnsight's LocalSimulationBackend; returns the payload size of each
    request as it is serialized (the count is the number of requests)."""
    from nnsight.intervention.backends.local import LocalSimulationBackend
    from nnsight.schema.request import RequestModel

    monkeypatch.setenv("DIFFLENS_NDIF_SIMULATE", "1")
    sizes: list[int] = []
    original = RequestModel.serialize.__func__  # type: ignore[attr-defined]

    def counting(cls: type, tracer: Any, compress: bool = False) -> bytes:
        blob = original(cls, tracer, compress)
        sizes.append(len(blob))
        return blob

    monkeypatch.setattr(RequestModel, "serialize", classmethod(counting))
    assert LocalSimulationBackend.__call__  # the backend that `remote="local"` builds
    return sizes


@pytest.fixture
def corpus(tmp_path: Path) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"the cake is w{i} and w{i + 1} of bake oven w{i + 2} flour" for i in range(40)))
    return str(path)


def _remote(path: Path) -> LoadedModel:
    from engine.models.remote import load_remote_model

    return load_remote_model(parse_spec(str(path)))


def test_remote_compute_builds_requests_and_matches_local(tiny_dir: Path, tiny_ft_dir: Path, corpus: str,
                                                          simulate: list[int]) -> None:
    from engine.ops.adl_ops import compute

    params = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "corpus": corpus, "n": 12, "k": 3, "batch_size": 8}
    local = compute(params, JobContext())
    assert simulate == []                                     # the local backend sends nothing
    events: list[dict[str, Any]] = []
    remote = compute(params | {"backend": "ndif", "max_request_rows": 5}, JobContext(emit=events.append))
    assert remote["run"] != local["run"] and not remote["cached"]  # NDIF runs are keyed apart
    # 12 texts in requests of ≤5 rows: 3 batches × (base, ft) = 6 requests, each a real serialized payload
    assert len(simulate) == 6 and min(simulate) > 1000
    assert "NDIF requests of ≤5 rows" in events[-1]["message"]
    assert remote["memory_plan"].startswith("NDIF")
    from store import results

    a, b = results.load(local["run"]), results.load(remote["run"])
    assert a is not None and b is not None
    for name in ("mean_diff", "mean_base", "base_norm", "ft_norm"):
        assert abs(a.tensors[name] - b.tensors[name]).max() < 1e-5, name


def test_remote_logit_lens_and_patchscope_match_local(tiny_gemma_dir: Path, simulate: list[int]) -> None:
    from engine.readouts.logit_lens import logit_lens
    from engine.readouts.patchscope import patchscope

    local = load_model(parse_spec(str(tiny_gemma_dir)), resolve_placement("cpu", "float32"))
    remote = _remote(tiny_gemma_dir)
    assert remote.remote == "local" and remote.hf.device.type == "meta"   # no weights here until the "server"
    torch.manual_seed(0)
    vectors = 3 * torch.randn(2, 3, local.d_model)
    want, got = logit_lens(local, vectors, top_k=7), logit_lens(remote, vectors, top_k=7, chunk_cells=4)
    assert len(simulate) == 2                                 # 6 cells in chunks of 4: two unembedding requests
    assert torch.equal(want.ids, got.ids) and (want.probs - got.probs).abs().max() < 1e-5
    assert (want.tokens == got.tokens).all()
    scales = [0.5, 1.0, 2.0]
    want_ps = patchscope(local, vectors[0], [1, 2, 3], scales=scales, top_k=5)
    got_ps = patchscope(remote, vectors[0], [1, 2, 3], scales=scales, top_k=5)
    assert torch.equal(want_ps.top.ids, got_ps.top.ids)
    assert (want_ps.top.probs - got_ps.top.probs).abs().max() < 1e-5
    assert want_ps.best_scale == got_ps.best_scale


def test_remote_steered_generation_matches_local(tiny_dir: Path, simulate: list[int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.steering.generate import generate_steered

    local = load_model(parse_spec(str(tiny_dir)), resolve_placement("cpu", "float32"))
    remote = _remote(tiny_dir)
    vector = torch.randn(local.d_model, generator=torch.Generator().manual_seed(1))
    prompts, strengths = ["the cake is", "a plan of"], [0.0, 4.0]
    want = generate_steered(local, vector, 2, prompts, strengths, max_new_tokens=6, temperature=0.0, seed=3,
                            chat=False)
    got = generate_steered(remote, vector, 2, prompts, strengths, max_new_tokens=6, temperature=0.0, seed=3,
                           chat=False)
    assert [s.completion_ids for s in got] == [s.completion_ids for s in want]    # greedy: the same tokens
    # sampled: seeded on the "server" (transformers draws there; here the top-k draw: same distribution, another
    # draw for a seed, see engine/steering/truncated_sampling.py), so two remote runs with one seed agree
    first, again = (generate_steered(remote, vector, 2, prompts, strengths, max_new_tokens=6, temperature=1.0,
                                     seed=3, chat=False) for _ in range(2))
    assert [s.completion_ids for s in first] == [s.completion_ids for s in again]
    assert [(s.prompt, s.strength, s.sample) for s in first] == [(s.prompt, s.strength, s.sample) for s in want]
    assert len(simulate) == 3
    monkeypatch.setenv("DIFFLENS_NDIF_MAX_ROWS", "3")            # 4 rows in requests of ≤3 rows
    streamed: list[list[str]] = []
    got = generate_steered(remote, vector, 2, prompts, strengths, max_new_tokens=6, chat=False,
                           on_step=lambda step, pieces: streamed.append(pieces))
    assert len(simulate) == 5 and streamed == [[s.text for s in got]]


# --- NDIF's failures, through nnsight's real RemoteBackend with the network faked ---------------------


class _Socket:
    """The /subscribe websocket: hands out a session id, then whatever `updates` says."""

    def __init__(self, updates: list[Any]) -> None:
        self.updates = [json.dumps({"session_id": "s1"}), *updates]

    def recv(self) -> str:
        item = self.updates.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def settimeout(self, value: float) -> None:
        pass

    def close(self) -> None:
        pass


def _fake_network(monkeypatch: pytest.MonkeyPatch, post: Any, updates: list[Any]) -> list[dict[str, str]]:
    """Fake the websocket and the HTTP POST nnsight's RemoteBackend makes; returns the headers sent."""
    import websocket

    sent: list[dict[str, str]] = []

    def fake_post(self: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
        sent.append(kwargs.get("headers") or {})
        return post(httpx.Request("POST", url))

    def connect(*args: Any, **kwargs: Any) -> _Socket:
        if updates == ["TIMEOUT"]:  # the /subscribe handshake never completes
            raise websocket.WebSocketTimeoutException("handshake timed out")
        return _Socket(list(updates))

    monkeypatch.setattr(websocket, "create_connection", connect)
    monkeypatch.setattr(httpx.Client, "post", fake_post)
    return sent


def _received(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "job1", "status": "RECEIVED"}, request=request)


@pytest.fixture
def on_ndif(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedModel:
    """The tiny model as NDIF would name it (`org/tiny`), with remote=True and a key in the environment."""
    from nnsight.modeling import huggingface

    monkeypatch.setenv("DIFFLENS_NDIF_SIMULATE", "1")
    model = _remote(tiny_dir)
    monkeypatch.delenv("DIFFLENS_NDIF_SIMULATE")
    monkeypatch.setitem(huggingface._ID_CACHE, str(tiny_dir), "org/tiny")
    monkeypatch.setenv("NDIF_API_KEY", "sk-test-secret")
    model.target = True  # type: ignore[attr-defined]
    return model


def _read(model: LoadedModel) -> None:
    from engine.adl.accumulate import read_positions
    from engine.corpus.windows import Batch

    ids = torch.tensor([[1, 5, 6, 7]])
    batch = Batch(input_ids=ids, attention_mask=torch.ones_like(ids), positions=torch.tensor([[1, 2]]))
    with ndif_errors():
        read_positions(model, batch, [1])


@pytest.mark.parametrize(("post", "updates", "message"), [
    (lambda r: httpx.Response(429, json={"detail": "Rate limit exceeded for this key"}, request=r), [],
     r"quota or rate limit reached \(HTTP 429\)"),
    (lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("timed out", request=r)), [],
     r"NDIF did not answer within \d+ s \(timeout\)"),
    (_received, ["TIMEOUT"], r"NDIF did not answer within \d+ s \(timeout\)"),
    (_received, [json.dumps({"id": "job1", "status": "ERROR",
                             "description": "Model org/tiny is not deployed on this cluster"})],
     r"the model is not available on NDIF: Model org/tiny is not deployed"),
    (lambda r: httpx.Response(401, json={"detail": "Invalid API key"}, request=r), [],
     r"NDIF rejected the API key \(HTTP 401\)"),
])
def test_remote_failures_are_one_line_errors(on_ndif: LoadedModel, monkeypatch: pytest.MonkeyPatch, post: Any,
                                             updates: list[Any], message: str) -> None:
    sent = _fake_network(monkeypatch, post, updates)
    with pytest.raises(UserError, match=message) as caught:
        _read(on_ndif)
    text = f"{caught.value.problem} {caught.value.fix}"
    assert "\n" not in text and "sk-test-secret" not in text         # one line; the key is never shown
    if updates != ["TIMEOUT"]:
        assert sent[0]["ndif-api-key"] == "sk-test-secret"           # the key from the environment was used


def test_no_api_key_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from nnsight import CONFIG

    from engine.models.remote import load_remote_model

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.delenv("DIFFLENS_NDIF_SIMULATE", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    monkeypatch.setattr(httpx, "get", lambda *a, **k: pytest.fail("no request may be sent without a key"))
    with pytest.raises(UserError, match="no NDIF API key: NDIF_API_KEY is not set"):
        load_remote_model(parse_spec("meta-llama/Llama-3.1-70B"))


def _status(monkeypatch: pytest.MonkeyPatch, answer: Any) -> None:
    def get(url: str, **kwargs: Any) -> httpx.Response:
        if isinstance(answer, BaseException):
            raise answer
        return httpx.Response(200, json=answer, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)


STATUS = {"deployments": {
    "a": {"repo_id": "meta-llama/Llama-3.1-70B", "revision": "main", "deployment_level": "HOT",
          "application_state": "RUNNING", "model_key": "nnsight.modeling.transformers.TransformersModel:{}"},
    "b": {"repo_id": "google/gemma-2-9b", "deployment_level": "WARM", "application_state": "DEPLOYING"},
    "c": {"repo_id": "org/cold", "deployment_level": "COLD", "application_state": "NOT_STARTED"}}}


def test_models_list_and_unavailable_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.models.remote import load_remote_model
    from engine.ops.ndif_ops import models

    _status(monkeypatch, STATUS)
    listed = models({}, JobContext())["models"]
    assert [(m["repo_id"], m["state"]) for m in listed] == [("google/gemma-2-9b", "DEPLOYING"),
                                                          ("meta-llama/Llama-3.1-70B", "RUNNING")]
    monkeypatch.setenv("NDIF_API_KEY", "sk-test-secret")
    monkeypatch.delenv("DIFFLENS_NDIF_SIMULATE", raising=False)
    with pytest.raises(UserError, match=r"model 'org/absent' is not deployed on NDIF — .*difflens ndif models"):
        load_remote_model(parse_spec("org/absent"))
    with pytest.raises(UserError, match="model 'google/gemma-2-9b' is deploying on NDIF"):
        load_remote_model(parse_spec("google/gemma-2-9b"))


def test_models_list_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.ops.ndif_ops import models

    _status(monkeypatch, httpx.ConnectError("[Errno -3] Temporary failure in name resolution"))
    with pytest.raises(UserError, match=r"cannot reach NDIF at https?://\S+ to list its models"):
        models({}, JobContext())


def test_local_checkpoints_and_adapters_are_refused_for_ndif(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.models.remote import load_remote_model

    monkeypatch.delenv("DIFFLENS_NDIF_SIMULATE", raising=False)
    with pytest.raises(UserError, match="is a local checkpoint; NDIF serves hub models only"):
        load_remote_model(parse_spec(str(tiny_dir)))
    with pytest.raises(UserError, match="this install's local copy"):
        load_remote_model(parse_spec("demo"))
    with pytest.raises(UserError, match="self: corpus samples from local weights"):
        compute_adl(AdlRequest(base="org/a", ft="org/b", backend="ndif"))


# --- multi-GPU placement and the memory plan ---------------------------------------------------------


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """Two fake GPUs; the returned dict is each one's free bytes (edit it in the test)."""
    free = {0: 48 * GIB, 1: 24 * GIB}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (free[index], 80 * GIB))
    return free


def _plan(request: AdlRequest, sizes: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> Any:
    from engine.models import memory

    monkeypatch.setattr(memory, "weight_bytes", lambda spec, placement: sizes[Path(spec.path).name])
    placements = request.placements
    return memory.plan_memory(request.base_spec, request.ft_spec, placements.base, request.sequential,
                              placements.ft)


def test_memory_plan_for_two_gpus(tiny_dir: Path, tiny_ft_dir: Path, two_gpus: dict[int, int],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {"llama": 20 * GIB, "llama-ft": 20 * GIB}
    pair = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "device": "cuda"}
    sharded = _plan(AdlRequest(**pair), sizes, monkeypatch)             # 2 GPUs: device_map=auto over both
    assert AdlRequest(**pair).placement.device_map == "auto"
    assert sharded.describe() == "joint: needs 46.0 GiB, 72.0 GiB available"
    sharded.check()
    split = _plan(AdlRequest(**pair, place="base=cuda:0,ft=cuda:1"), sizes, monkeypatch)
    assert split.describe() == ("split: base on cuda:0 needs 23.0 GiB, 48.0 GiB free; "
                                "ft on cuda:1 needs 23.0 GiB, 24.0 GiB free")
    split.check()
    two_gpus[1] = 16 * GIB                                             # ft no longer fits its GPU
    refused = _plan(AdlRequest(**pair, place="base=cuda:0,ft=cuda:1"), sizes, monkeypatch)
    with pytest.raises(UserError) as caught:
        refused.check()
    assert caught.value.problem == "the pair does not fit: ft on cuda:1 needs 23.0 GiB, 16.0 GiB free"
    assert "--device-map balanced" in caught.value.fix
    big = {"llama": 40 * GIB, "llama-ft": 40 * GIB}                      # 92 GiB joint > 64 GiB on both GPUs
    with pytest.raises(UserError, match=r"does not fit: joint: needs 92.0 GiB, 64.0 GiB available.*"
                                        r"--sequential \(needs 46.0 GiB\)"):
        _plan(AdlRequest(**pair, device_map="balanced"), big, monkeypatch).check()
    _plan(AdlRequest(**pair, device_map="balanced", sequential=True), big, monkeypatch).check()
    shared_gpu = _plan(AdlRequest(**pair, device_map="base=balanced", place="ft=cuda:1"), big, monkeypatch)
    with pytest.raises(UserError, match=r"ft on cuda:1 needs 46\.0 GiB, 16\.0 GiB free"):
        shared_gpu.check()


def test_device_map_and_place_options(two_gpus: dict[int, int]) -> None:
    from engine.models.pair_placement import parse_device_map, resolve_pair_placement

    assert parse_device_map("balanced") == {"base": "balanced", "ft": "balanced"}
    assert parse_device_map("base=balanced,ft=auto") == {"base": "balanced", "ft": "auto"}
    per_side = parse_device_map('{"base": "auto", "ft": {"model": 1, "lm_head": "cpu"}}')
    assert per_side == {"base": "auto", "ft": '{"lm_head": "cpu", "model": 1}'}
    placed = resolve_pair_placement("cuda", "bfloat16", '{"model": 0, "lm_head": 1}', "ft=cuda:1")
    assert placed.base.hf_device_map == {"model": 0, "lm_head": 1} and placed.ft.hf_device_map == {"model": 0,
                                                                                                    "lm_head": 1}
    assert resolve_pair_placement("cuda", place="base=cuda:0,ft=cuda:1").ft.device == "cuda:1"
    from engine.models.memory import devices_of

    assert devices_of(placed.base) == ("cuda:0", "cuda:1")
    for bad, match in [("fast", "cannot read --device-map 'fast'"), ("base=x", "cannot read --device-map base"),
                       ('{"model": true}', "cannot read --device-map")]:
        with pytest.raises(UserError, match=match):
            parse_device_map(bad)
    with pytest.raises(UserError, match="cannot read --place 'cuda:1'"):
        resolve_pair_placement(place="cuda:1")


def test_compute_reports_the_memory_plan_before_loading(tiny_dir: Path, tiny_ft_dir: Path, corpus: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.adl import compute
    from engine.models.cache import ModelCache

    monkeypatch.setattr(compute, "MODELS", ModelCache())   # nothing loaded yet: the plan comes first
    events: list[dict[str, Any]] = []
    outcome = compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=corpus, n=4, k=2,
                                     device="cpu"), JobContext(emit=events.append))
    assert events[0]["message"].startswith("memory plan: joint: needs") and events[0]["done"] == 0
    assert outcome.memory_plan is not None and "GiB available" in outcome.memory_plan


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: layers split over cuda:0 and cpu")
def test_layers_on_different_devices_are_gathered_on_one(tiny_dir: Path) -> None:
    from engine.adl.accumulate import read_positions
    from engine.corpus.windows import Batch

    spec = parse_spec(str(tiny_dir))
    whole = load_model(spec, resolve_placement("cpu", "float32"))
    device_map = json.dumps({"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0,
                             "model.layers.1": 0, "model.layers.2": "cpu", "model.layers.3": "cpu",
                             "model.norm": "cpu", "lm_head": "cpu"})
    split = load_model(spec, resolve_placement("cuda", "float32", device_map))
    ids = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 10, 11, 12]])
    batch = Batch(input_ids=ids, attention_mask=torch.ones_like(ids), positions=torch.tensor([[1, 2], [2, 3]]))
    got = read_positions(split, batch, [1, 3])
    assert got.device == split.input_device
    assert (got.cpu() - read_positions(whole, batch, [1, 3])).abs().max() < 1e-4
