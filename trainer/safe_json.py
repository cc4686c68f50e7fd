"""JSON from outside, parsed with a bound on nesting: a body of 100,000 nested lists makes
json.loads recurse past Python's limit (a RecursionError, an answer of 500). trainer.search
applies the same bound to YAML specs, which it also reads without aliases."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # configs, specs and payload headers nest a handful of levels


def too_deep(value: Any) -> bool:
    """Lists and objects nested deeper than MAX_DEPTH levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def loads(text: str | bytes) -> Any:
    """json.loads, raising json.JSONDecodeError (as a syntax error does) for nesting deeper
    than MAX_DEPTH levels, so that every caller's message for bad JSON covers it."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0) from None
    if too_deep(value):
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)
    return value
