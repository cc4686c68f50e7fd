from urllib.parse import urlencode

from django import template
from django.utils.html import format_html

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
