"""A run's environment (trainer.environment) as the server keeps it: checked for its shape and
size, shown on the run page, and compared across runs (what differs)."""

from __future__ import annotations

from typing import Any

from trainer.environment import MAX_DIFF_BYTES, MAX_PACKAGES, MAX_TEXT

TEXT_FIELDS = ("command", "python", "platform", "torch", "cuda", "driver")
COMPARED = ("command", "python", "platform", "torch", "cuda", "driver", "gpus")


def check_environment(value: Any, errors: dict[str, str]) -> dict[str, Any]:
    """What a client says of where it runs: the known fields only, each of its type and size."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["environment"] = "must be an object: command, python, torch, cuda, gpus, driver, packages, git_diff"
        return {}
    clean: dict[str, Any] = {}
    for name, item in value.items():
        where = f"environment.{name}"
        if name in TEXT_FIELDS:
            if not isinstance(item, str) or len(item) > MAX_TEXT or "\x00" in item:
                errors[where] = f"must be text of at most {MAX_TEXT} characters, without NUL"
                continue
        elif name == "gpus":
            if (
                not isinstance(item, list)
                or len(item) > 64
                or not all(isinstance(g, str) and len(g) <= 200 for g in item)
            ):
                errors[where] = "must be a list of at most 64 GPU names"
                continue
        elif name == "packages":
            if (
                not isinstance(item, dict)
                or len(item) > MAX_PACKAGES
                or not all(
                    isinstance(k, str)
                    and isinstance(v, str)
                    and len(k) <= 200
                    and len(v) <= 200
                    and "\x00" not in k + v
                    for k, v in item.items()
                )
            ):
                errors[where] = f"must map at most {MAX_PACKAGES} package names to their versions"
                continue
        elif name == "git_diff":
            if not isinstance(item, str) or len(item.encode()) > MAX_DIFF_BYTES or "\x00" in item:
                errors[where] = f"must be text of at most {MAX_DIFF_BYTES} bytes (the client cuts it there)"
                continue
        elif name == "git_diff_truncated":
            if not isinstance(item, bool):
                errors[where] = "must be true or false"
                continue
        else:
            errors[where] = (
                "unknown; allowed: command, python, platform, torch, cuda, gpus, driver, packages, git_diff, "
                "git_diff_truncated"
            )
            continue
        clean[name] = item
    return clean


def differences(environments: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """What differs among runs' environments: [{"what", "values": {run id: value}}], the compared
    fields first, then each package whose version differs (or that some runs lack)."""
    known = {run_id: env for run_id, env in environments.items() if env}
    if len(known) < 2:
        return []
    rows = []
    for field in COMPARED:
        values = {run_id: _shown(env.get(field)) for run_id, env in known.items()}
        if len(set(values.values())) > 1:
            rows.append({"what": field, "values": values})
    names = sorted(set().union(*(env.get("packages", {}) for env in known.values())))
    for name in names:
        values = {run_id: env.get("packages", {}).get(name, "–") for run_id, env in known.items()}
        if len(set(values.values())) > 1:
            rows.append({"what": f"package {name}", "values": values})
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "–"
    return str(value) if value else "–"
