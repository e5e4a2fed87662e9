"""Who may call NDIF and what it serves: the API key (from the environment, never stored or logged),
the simulation switch, and the list of deployed models."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.errors import UserError

SIMULATE_ENV = "DIFFLENS_NDIF_SIMULATE"
KEY_ENV = "NDIF_API_KEY"


def execution_target() -> bool | str:
    """nnsight's `remote=`: True ships traces to NDIF; "local" serializes them as for NDIF, deserializes
    them with this project's modules hidden and runs them here (a dry run of the remote path)."""
    return "local" if os.environ.get(SIMULATE_ENV) == "1" else True


def host() -> str:
    from nnsight import CONFIG

    return str(CONFIG.API.HOST)


def require_api_key() -> None:
    """Refuse before any request when no key is set; a key in the environment wins over nnsight's config."""
    from nnsight import CONFIG

    key = os.environ.get(KEY_ENV)
    if key:
        CONFIG.API.APIKEY = key  # in memory only: CONFIG.save() is never called
    if not CONFIG.API.APIKEY:
        raise UserError(f"no NDIF API key: {KEY_ENV} is not set",
                        f"export {KEY_ENV}=... (a key from https://login.ndif.us), or use --backend local")


@dataclass(frozen=True)
class Deployment:
    """One model NDIF has deployed (HOT or WARM); `state` RUNNING means it answers now."""

    repo_id: str
    revision: str
    state: str
    level: str

    def to_json(self) -> dict[str, str]:
        return {"repo_id": self.repo_id, "revision": self.revision, "state": self.state, "level": self.level}


def served_models() -> list[Deployment]:
    """NDIF's deployed models (`nnsight.ndif.status`); a clear error when NDIF cannot be reached."""
    from nnsight import ndif

    raw = ndif.status(raw=True)
    if not isinstance(raw, dict) or "deployments" not in raw:
        raise UserError(f"cannot reach NDIF at {host()} to list its models",
                        "check the network (and NDIF_HOST), or try again later")
    found: dict[tuple[str, str], Deployment] = {}
    for name, value in raw["deployments"].items():
        if value.get("deployment_level") not in ("HOT", "WARM"):
            continue
        one = Deployment(value.get("repo_id", name), value.get("revision") or "main",
                         value.get("application_state", "UNHEALTHY"), value["deployment_level"])
        held = found.get((one.repo_id, one.revision))
        if held is None or (held.state != "RUNNING" and one.state == "RUNNING"):
            found[(one.repo_id, one.revision)] = one
    return sorted(found.values(), key=lambda d: d.repo_id.lower())


def check_served(repo_id: str, revision: str | None) -> None:
    """Refuse a model NDIF does not run right now, naming the command that lists the ones it does."""
    wanted = (repo_id.lower(), revision or "main")
    states = {(d.repo_id.lower(), d.revision): d.state for d in served_models()}
    state = states.get(wanted)
    if state == "RUNNING":
        return
    detail = f"is {state.lower()}" if state else "is not deployed"
    raise UserError(f"model {repo_id!r} {detail} on NDIF",
                    "run `difflens ndif models` for the models it serves, or use --backend local")
