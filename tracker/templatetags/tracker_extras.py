from typing import Any
from urllib.parse import urlencode

from django import template
from django.utils.html import format_html

from tracker.core.storage import FINAL_LOSS_SPAN
from tracker.lib.finite_json import finite_json_script as _finite_json_script

register = template.Library()


@register.simple_tag(takes_context=True)
def sort_link(context, column: str, title: str) -> str:
    """A column header that sorts by it, descending first, then toggles; filters are kept."""
    request = context["request"]
    current = context.get("sort", "")
    target = column if current == f"-{column}" else f"-{column}"
    query = {key: value for key, value in request.GET.items() if key not in ("sort", "page") and value}
    arrow = " ▼" if current == f"-{column}" else " ▲" if current == column else ""
    return format_html('<a href="?{}" class="sort">{}{}</a>', urlencode({**query, "sort": target}), title, arrow)


@register.simple_tag
def final_loss_meaning() -> str:
    """What a run's final loss is, for the title of its label."""
    return (
        f"the training loss averaged over about its last {FINAL_LOSS_SPAN} logged steps"
        " (an exponential moving average; non-finite losses left out)"
    )


@register.filter
def finite_json_script(value: Any, element_id: str) -> str:
    """json_script with the API's encoder: a NaN (a diverged run's loss) is written as null,
    which a page's JSON.parse reads, where NaN would lose the whole page's data."""
    return _finite_json_script(value, element_id)


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """mapping[key] in a template (a table of values by run id)."""
    return mapping.get(key) if isinstance(mapping, dict) else None
