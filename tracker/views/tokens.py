"""A user's API tokens, for scripts and the trainwatch client: issue one (shown once), see when
each was last used, revoke one. Staff see and revoke everyone's in the admin."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from tracker.models import ApiToken
from tracker.views.decorators import current_user


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="what the token is for, e.g. the script or the machine")


@never_cache  # it shows a new token once: no browser or proxy may keep a copy
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = TokenForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        _, issued = ApiToken.issue(user, form.cleaned_data["name"].strip())
        form = TokenForm()
    return render(
        request,
        "tracker/tokens.html",
        {
            "form": form,
            "issued": issued,
            "tokens": ApiToken.objects.filter(user=user).order_by("-created_at"),
            "server": request.build_absolute_uri("/").rstrip("/"),
        },
        status=400 if request.method == "POST" and issued is None else 200,
    )


@login_required
@require_POST
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    get_object_or_404(ApiToken, pk=token_id, user=current_user(request)).delete()
    return redirect("tokens")
