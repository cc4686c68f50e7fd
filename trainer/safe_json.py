"""JSON from outside, bounded and clean: nesting is measured on the raw text before it is parsed
(a body of 100,000 nested lists would make json.loads recurse past Python's limit), and
`unclean` finds what JSON may carry but no store keeps: NaN and Infinity (which Python's json
reads, and PostgreSQL's jsonb refuses) and NUL characters (which PostgreSQL's text refuses).
trainer.search applies the same rules to YAML specs, which it also reads without aliases."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

MAX_DEPTH = 64  # configs, specs and payload headers nest a handful of levels
# a JSON string, escapes included, so that brackets inside one are not counted as nesting
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")


def depth(raw: str | bytes) -> int:
    """How deep lists and objects nest in JSON text, read without parsing it."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    bare = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    if not bare.size:
        return 0
    steps = np.isin(bare, list(_OPEN)).astype(np.int64) - np.isin(bare, list(b"]}")).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def too_deep(value: Any) -> bool:
    """Lists and objects nested deeper than MAX_DEPTH levels (walked without recursion): for
    values that did not come as JSON text (YAML)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if level + 1 > MAX_DEPTH:
                    return True
                stack.append((child, level + 1))
    return False


def loads(text: str | bytes) -> Any:
    """json.loads of text nested at most MAX_DEPTH levels; deeper text raises
    json.JSONDecodeError (as a syntax error does) before any parsing, so that every caller's
    message for bad JSON covers it."""
    if depth(text) > MAX_DEPTH:
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)
    return json.loads(text)


def unclean(value: Any, path: str) -> str | None:
    """Where a parsed value holds NaN, an infinity or a NUL character (in a text or a key), as
    a message naming that place (e.g. "config.lr: NaN is not allowed ..."); None when clean."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{where}: {item} is not allowed (JSON numbers must be finite; send null for a missing value)"
        if isinstance(item, str) and "\x00" in item:
            return f"{where}: text must not contain NUL (\\u0000) characters"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{where}: a key must not contain NUL (\\u0000) characters"
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return None
