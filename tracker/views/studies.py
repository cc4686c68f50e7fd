"""Study pages: the list with the creation form, a study's page (leaderboard, charts,
edge warnings, promote, ensemble, notes), its printable report (and Markdown / CSV),
and the JSON API the study page draws from."""

from __future__ import annotations

import csv
import io
import json

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tracker.access import visible_projects
from tracker.models import Study
from tracker.studies import create_study, promote, summary
from tracker.views.api import _api_login_required, _bad_request, read_json_object
from trainer.config import ConfigError
from trainer.presets import PRESETS


def visible_studies(user) -> QuerySet[Study]:
    return Study.objects.filter(project__in=visible_projects(user))


def parse_spec_text(text: str) -> object:
    """A spec as JSON, or YAML (a superset of JSON) for people who write it by hand."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as yaml_error:
            raise forms.ValidationError(f"neither JSON ({json_error}) nor YAML ({str(yaml_error).splitlines()[0]})")


class StudyForm(forms.Form):
    """The web form and the admin's: a preset, or a spec of one's own."""

    project = forms.CharField(max_length=100, initial="default")
    name = forms.CharField(max_length=200)
    preset = forms.ChoiceField(choices=[("", "— a spec of my own (below) —"), *((k, v["title"]) for k, v in PRESETS.items())],
                               required=False)
    spec = forms.CharField(widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}), required=False,
                           help_text="JSON or YAML: kind (comparison, random, grid, coarse_to_fine), base, and "
                                     "choices or params; see the README's Studies section")
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def clean(self):
        data = super().clean()
        if not data.get("preset") and not (data.get("spec") or "").strip():
            raise forms.ValidationError("choose a preset or write a spec")
        if data.get("preset") and (data.get("spec") or "").strip():
            raise forms.ValidationError("a preset or a spec, not both")
        if (data.get("spec") or "").strip():
            try:
                data["parsed_spec"] = parse_spec_text(data["spec"])
            except forms.ValidationError as error:
                self.add_error("spec", error)
        return data

    def create(self, user) -> Study | None:
        """The study, or None with the spec's errors added to the form (field by field)."""
        data = self.cleaned_data
        preset = data.get("preset") or ""
        spec = PRESETS[preset]["spec"] if preset else data["parsed_spec"]
        try:
            return create_study(data["project"], data["name"], spec, user, preset=preset, notes=data.get("notes", ""))
        except ConfigError as error:
            for field, message in error.errors.items():
                if field in ("project", "name"):
                    self.add_error(field, message)
                else:
                    self.add_error("spec" if not preset else None, f"{field}: {message}")
            return None


@login_required
@require_http_methods(["GET", "POST"])
def study_list(request: HttpRequest) -> HttpResponse:
    form = StudyForm(request.POST or None, initial={"name": "", "project": "default"})
    if request.method == "POST" and form.is_valid():
        study = form.create(request.user)
        if study is not None:
            return redirect(study)
    studies = visible_studies(request.user).select_related("project").order_by("-created_at")[:200]
    return render(request, "tracker/studies.html", {"studies": studies, "form": form,
                                                     "presets": json.dumps({k: v["spec"] for k, v in PRESETS.items()})},
                  status=400 if request.method == "POST" else 200)


@login_required
def study_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(visible_studies(request.user).select_related("project"), pk=study_id)
    data = summary(study)
    return render(request, "tracker/study.html", {"study": study, "data": data, "page_data": data})


def _posted_whole(request: HttpRequest, name: str, default: str) -> int:
    raw = request.POST.get(name, default)
    try:
        return int(raw)
    except ValueError:
        raise ConfigError({name: f"must be a whole number, got {raw!r}"}) from None


def _study_action(request: HttpRequest, study_id: int, action) -> HttpResponse:
    """Run a button's action on a study the user sees; its errors go back on the page (400)."""
    study = get_object_or_404(visible_studies(request.user).select_related("project"), pk=study_id)
    try:
        action(study)
    except ConfigError as error:
        message = "; ".join(f"{field}: {text}" for field, text in error.errors.items())
    except ValueError as error:  # e.g. an ensemble of runs trained on different splits
        message = str(error)
    else:
        return redirect(study)
    data = summary(study)
    return render(request, "tracker/study.html", {"study": study, "data": data, "page_data": data, "error": message},
                  status=400)


@login_required
@require_POST
def study_promote(request: HttpRequest, study_id: int) -> HttpResponse:
    return _study_action(request, study_id, lambda study: promote(
        study, _posted_whole(request, "k", "3"), _posted_whole(request, "epochs", "0"), request.user))


@login_required
@require_POST
def study_ensemble(request: HttpRequest, study_id: int) -> HttpResponse:
    from tracker.studies import evaluate_ensemble

    return _study_action(request, study_id, lambda study: evaluate_ensemble(study, _posted_whole(request, "k", "3")))


@login_required
@require_POST
def study_notes(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(visible_studies(request.user), pk=study_id)
    Study.objects.filter(pk=study.pk).update(notes=request.POST.get("notes", "")[:20_000])
    return redirect(study)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return value.get("name") or json.dumps(value, sort_keys=True)
    return str(value)


def report_markdown(data: dict) -> str:
    lines = [f"# Study: {data['name']}", ""]
    if data["question"]:
        lines += [f"**Question.** {data['question']}", ""]
    lines += [f"{data['kind']} study, {data['total']} runs ({', '.join(f'{n} {s}' for s, n in sorted(data['counts'].items()))}).", ""]
    lines += ["## Leaderboard", "", "| rank | run | " + " | ".join(data["keys"]) + " | best val acc | final loss | status | diagnosis |",
              "| --- | --- | " + " | ".join("---" for _ in data["keys"]) + " | --- | --- | --- | --- |"]
    for rank, row in enumerate(data["rows"], 1):
        cells = [str(rank), f"#{row['id']} {row['name']}", *(_fmt(row["values"].get(k)) for k in data["keys"]),
                 _fmt(row["best_val_accuracy"]), _fmt(row["final_loss"]), row["status"], row["finding"] or row["health"] or "–"]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines.append("")
    if data["warnings"]:
        lines += ["## Warnings", "", *(f"- {w}" for w in data["warnings"]), ""]
    if data["ensemble"]:
        e = data["ensemble"]
        lines += ["## Ensemble", "", f"Top {e['k']} runs (#{', #'.join(map(str, e['runs']))}) averaged: validation accuracy "
                  f"{e['accuracy']:.4f}, against {e['best_single']:.4f} for the best single run ({e['examples']} examples).", ""]
    findings: dict[str, int] = {}
    for row in data["rows"]:
        if row["finding"]:
            findings[row["finding"]] = findings.get(row["finding"], 0) + 1
    lines += ["## Diagnosis", ""] + ([f"- {title}: {n} run(s)" for title, n in sorted(findings.items(), key=lambda x: -x[1])]
                                      or ["- no finding"]) + [""]
    lines += ["## Notes", "", data["notes"] or "(none)", ""]
    return "\n".join(lines)


def report_csv(data: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "run", "name", "stage", *data["keys"], "best_val_accuracy", "final_loss", "status",
                     "health", "finding", "seconds"])
    for rank, row in enumerate(data["rows"], 1):
        writer.writerow([rank, row["id"], row["name"], row["stage"], *(_fmt(row["values"].get(k)) for k in data["keys"]),
                         row["best_val_accuracy"], row["final_loss"], row["status"], row["health"], row["finding"],
                         row["seconds"]])
    return out.getvalue()


@login_required
def study_report(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(visible_studies(request.user).select_related("project"), pk=study_id)
    data = summary(study)
    kind = request.GET.get("format", "html")
    filename = f"study-{study.pk}"
    if kind == "md":
        response = HttpResponse(report_markdown(data), content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}.md"'
        return response
    if kind == "csv":
        response = HttpResponse(report_csv(data), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return response
    if kind != "html":
        return HttpResponse("format: must be html, md or csv", status=400, content_type="text/plain")
    return render(request, "tracker/study_report.html", {"study": study, "data": data, "page_data": data})


@require_GET
@_api_login_required
def api_study(request: HttpRequest, study_id: int) -> JsonResponse:
    study = get_object_or_404(visible_studies(request.user), pk=study_id)
    return JsonResponse(summary(study))


@require_http_methods(["GET", "POST"])
@_api_login_required
def api_studies(request: HttpRequest) -> JsonResponse:
    """GET: the latest studies. POST {"project", "name", "spec"} or {"project", "name", "preset"}."""
    if request.method == "GET":
        studies = visible_studies(request.user).order_by("-created_at")[:100]
        return JsonResponse({"studies": [{"id": s.pk, "name": s.name, "kind": s.kind, "status": s.status,
                                          "url": s.get_absolute_url()} for s in studies]})
    body, refused = read_json_object(request, "project, name and spec (or preset)")
    if refused is not None:
        return refused
    unknown = set(body) - {"project", "name", "spec", "preset", "notes"}
    if unknown:
        return _bad_request({key: "unknown field; allowed: project, name, spec, preset, notes" for key in sorted(unknown)})
    preset = body.get("preset")
    if preset is not None and preset not in PRESETS:
        return _bad_request({"preset": f"unknown preset {preset!r}; one of {', '.join(PRESETS)}"})
    if (preset is None) == ("spec" not in body):
        return _bad_request({"spec": "give a spec or a preset (one of them)"})
    notes = body.get("notes", "")
    if not isinstance(notes, str) or len(notes) > 20_000:
        return _bad_request({"notes": "must be text of at most 20000 characters"})
    try:
        study = create_study(body.get("project", "default"), body.get("name", preset or ""),
                             PRESETS[preset]["spec"] if preset else body["spec"], request.user, preset=preset or "",
                             notes=notes)
    except ConfigError as error:
        return _bad_request(error.errors)
    return JsonResponse(summary(study), status=201)
