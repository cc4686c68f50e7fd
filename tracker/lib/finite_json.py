"""The one JSON encoder of every answer and page: JSON has no NaN or Infinity, and a browser's
JSON.parse refuses the whole document when Python's json writes them, so a diverged run's
NaN loss is written as null (the pages draw a gap and say why). Every view answers with
this module's JsonResponse; pages embed data with the `finite_json_script` filter."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse as DjangoJsonResponse
from django.utils.html import json_script


def finite(value: Any) -> Any:
    """The value with every non-finite float (NumPy's too) replaced by None. A series travels
    as a NumPy array, checked in one vectorised pass rather than number by number."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            cleaned = value.astype(object)
            cleaned[~np.isfinite(value)] = None
            return cleaned.tolist()
        return value.tolist()
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


class FiniteJSONEncoder(DjangoJSONEncoder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_nan"] = False  # a non-finite number that got past `finite` is a bug: say so
        super().__init__(*args, **kwargs)

    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        return super().iterencode(finite(o), _one_shot)


class JsonResponse(DjangoJsonResponse):
    def __init__(self, data: Any, encoder: type[DjangoJSONEncoder] = FiniteJSONEncoder, **kwargs: Any) -> None:
        super().__init__(data, encoder=encoder, **kwargs)


def finite_json_script(value: Any, element_id: str | None = None) -> str:
    return json_script(value, element_id, encoder=FiniteJSONEncoder)
