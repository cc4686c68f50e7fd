"""Forms: the study form (web page and admin), the admin's clone and priority forms, and the
JSON API's query parameters. Each validates its input's shape; the rules of what may be
created (configs, specs, projects, names) are tracker.core's and trainer's, called from here."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from tracker.core.alerts import MAX_ALERT_TARGETS
from tracker.core.layers import QUANTITIES
from tracker.core.runs import MAX_NAME_LENGTH, MAX_PROJECT_NAME_LENGTH
from tracker.core.studies import MAX_NAME, MAX_NOTES, create_study
from tracker.models import PRIORITY_MAX, PRIORITY_MIN, Project, Run, Study
from trainer import safe_json
from trainer.config import ConfigError
from trainer.presets import PRESETS
from trainer.search import parse_spec_text
from trainer.wire import SERIES_KEY

KEY_PATTERN = SERIES_KEY
CONFIG_KEY_PATTERN = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")
DEFAULT_MAX_POINTS = 1000
MAX_KEYS_PER_REQUEST = 300
MAX_COMPARED_RUNS = 50


def first_errors(form: forms.Form) -> dict[str, str]:
    """A form's errors as {field: message} (the form-wide ones under "__all__")."""
    return {field: " ".join(str(message) for message in messages) for field, messages in form.errors.items()}


def add_config_errors(form: forms.Form, error: ConfigError, fields: tuple[str, ...]) -> None:
    """A ConfigError's messages on the form: on a field of the form when its dotted name starts
    with one, else form-wide, each message prefixed with the dotted name it is about."""
    for name, message in error.errors.items():
        head = name.split(".", 1)[0]
        target = head if head in fields else None
        form.add_error(target, message if name == target else f"{name}: {message}")


def whole_number(low: int, high: int, required: bool = False, **kwargs: Any) -> forms.IntegerField:
    """An integer field whose every error says what is allowed."""
    message = f"must be a whole number from {low} to {high}"
    return forms.IntegerField(
        min_value=low,
        max_value=high,
        required=required,
        error_messages={
            "invalid": message,
            "min_value": message,
            "max_value": message,
            "required": f"is required: {message}",
        },
        **kwargs,
    )


class StudyForm(forms.Form):
    """The web form and the admin's: a preset, or a spec of one's own (JSON or YAML)."""

    project = forms.CharField(max_length=MAX_PROJECT_NAME_LENGTH, initial="default")
    name = forms.CharField(max_length=MAX_NAME)
    preset = forms.ChoiceField(
        choices=[("", "— a spec of my own (below) —"), *((key, value["title"]) for key, value in PRESETS.items())],
        required=False,
    )
    spec = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}),
        required=False,
        help_text="JSON or YAML: kind (comparison, random, grid, coarse_to_fine), base, and "
        "choices or params; see docs/studies.md",
    )
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=MAX_NOTES)

    def clean_spec(self) -> Any:
        text = (self.cleaned_data.get("spec") or "").strip()
        if not text:
            return None
        try:
            return parse_spec_text(text)
        except ConfigError as error:
            raise ValidationError(error.errors["spec"]) from None

    def create(self, user: Any) -> Study | None:
        """The study, or None with the errors of tracker.core.studies.create_study on the form."""
        data = self.cleaned_data
        try:
            return create_study(
                data["project"], data["name"], data["spec"], user, preset=data["preset"] or None, notes=data["notes"]
            )
        except ConfigError as error:
            add_config_errors(self, error, ("project", "name", "spec", "preset", "notes"))
            return None


class CloneForm(forms.Form):
    """A new run from an old one's config, edited; validated by the same create_run as the API."""

    project = forms.CharField(max_length=MAX_PROJECT_NAME_LENGTH)
    name = forms.CharField(max_length=MAX_NAME_LENGTH, required=False)
    tags = forms.CharField(required=False, help_text="comma-separated")
    priority = whole_number(PRIORITY_MIN, PRIORITY_MAX, required=True, initial=0)
    config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 30, "cols": 90, "spellcheck": "false"}),
        help_text="the run config as JSON; docs/guide/run-config.md lists every key",
    )

    def clean_config(self) -> object:
        try:
            config = safe_json.loads(self.cleaned_data["config"])
        except json.JSONDecodeError as error:
            raise ValidationError(f"not valid JSON: {error}") from None
        problem = safe_json.unclean(config, "config")
        if problem:
            raise ValidationError(problem)
        return config

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]


class RunPriorityForm(forms.ModelForm):
    """The job queue's inline priority: accepted only while the run is still queued."""

    class Meta:
        model = Run
        fields = ("priority",)

    def clean_priority(self) -> int:
        priority: int = self.cleaned_data["priority"]
        if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            raise ValidationError(f"priority must be from {PRIORITY_MIN} to {PRIORITY_MAX}")
        if priority != self.instance.priority and self.instance.status != Run.Status.QUEUED:
            raise ValidationError(f"the run is {self.instance.status}: priority only changes while it is queued")
        return priority


# --- query parameters of the JSON API ------------------------------------------------


class QueryForm(forms.Form):
    """GET parameters: a missing one takes its field's `initial`."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name, field in self.fields.items():
            if cleaned.get(name) in (None, "") and field.initial is not None:
                cleaned[name] = field.initial
        return cleaned


def _series_key(value: str, what: str) -> str:
    if not KEY_PATTERN.match(value):
        raise ValidationError(f"{value!r} is not a {what} key (letters, digits, _ . / -)")
    return value


class SeriesQuery(QueryForm):
    """?series=loss:120,val_acc,lr&max_points=1000[&from=S&until=T]"""

    series = forms.CharField(required=False)
    max_points = whole_number(10, 100_000, initial=DEFAULT_MAX_POINTS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `from` is a Python keyword, so these two are added by name
        self.fields["from"] = forms.IntegerField(
            required=False, error_messages={"invalid": "must be a whole number (a step)"}
        )
        self.fields["until"] = forms.IntegerField(
            required=False, error_messages={"invalid": "must be a whole number (a step)"}
        )

    def clean_series(self) -> dict[str, int | None]:
        """`loss:120,val_acc` -> {key: the step after which points are wanted, or None for all}."""
        wanted: dict[str, int | None] = {}
        for item in filter(None, self.cleaned_data["series"].split(",")):
            key, _, after = item.partition(":")
            _series_key(key, "series")
            try:
                wanted[key] = int(after) if after else None
            except ValueError:
                raise ValidationError(f"{item!r}: the part after ':' must be a step number") from None
        if len(wanted) > MAX_KEYS_PER_REQUEST:
            raise ValidationError(f"at most {MAX_KEYS_PER_REQUEST} keys per request")
        return wanted

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, until = cleaned.get("from"), cleaned.get("until")
        if start is not None and until is not None and until < start:
            self.add_error("until", f"must not be before from ({start})")
        return cleaned


class CompareQuery(QueryForm):
    """?runs=3,4&metric=loss[&group=optimizer.name,schedule.name][&lr=1][&max_points=1000]"""

    runs = forms.CharField()
    metric = forms.CharField(required=False, initial="loss")
    group = forms.CharField(required=False)
    lr = forms.BooleanField(required=False)
    max_points = whole_number(10, 100_000, initial=DEFAULT_MAX_POINTS)

    def clean_runs(self) -> list[int]:
        message = f"must be 1 to {MAX_COMPARED_RUNS} run ids separated by commas, e.g. runs=3,4"
        try:
            ids = [int(part) for part in self.cleaned_data["runs"].split(",") if part.strip()]
        except ValueError:
            raise ValidationError(message) from None
        if not 1 <= len(ids) <= MAX_COMPARED_RUNS:
            raise ValidationError(message)
        return list(dict.fromkeys(ids))

    def clean_metric(self) -> str:
        return _series_key(self.cleaned_data["metric"] or "loss", "series")

    def clean_group(self) -> list[str]:
        keys = [key for key in self.cleaned_data["group"].split(",") if key]
        bad = [key for key in keys if not CONFIG_KEY_PATTERN.match(key)]
        if bad:
            raise ValidationError(f"{', '.join(bad)}: config keys look like optimizer.name or schedule.name")
        return keys


class LayersQuery(QueryForm):
    """?quantity=update_ratio&buckets=100"""

    quantity = forms.ChoiceField(
        choices=[(name, name) for name in QUANTITIES],
        required=False,
        initial="update_ratio",
        error_messages={"invalid_choice": f"must be one of {', '.join(QUANTITIES)}; got %(value)r"},
    )
    buckets = whole_number(1, 1000, initial=100)


class AtStepQuery(QueryForm):
    """?key=K[&step=S] of the histogram and image APIs."""

    key = forms.CharField(required=False)
    step = forms.IntegerField(required=False, error_messages={"invalid": "must be a whole number"})

    def clean_key(self) -> str | None:
        key = self.cleaned_data["key"]
        return _series_key(key, "histogram or image") if key else None


class TargetLines(forms.CharField):
    """One e-mail address or URL a line, each checked by the model field's own validators."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def __init__(self, model_field: str, one: str, many: str, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)
        self.base_field = Project._meta.get_field(model_field).base_field  # type: ignore[union-attr]
        self.one, self.many = one, many

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def clean(self, value: Any) -> list[str]:
        lines = [line.strip() for line in str(super().clean(value) or "").splitlines() if line.strip()]
        if len(lines) > MAX_ALERT_TARGETS:
            raise ValidationError(f"at most {MAX_ALERT_TARGETS} {self.many}, one a line (got {len(lines)})")
        problems = []
        for number, line in enumerate(lines, 1):
            try:
                self.base_field.run_validators(line)
                if len(line) > self.base_field.max_length:
                    raise ValidationError(f"longer than {self.base_field.max_length} characters")
            except ValidationError as error:
                problems.append(f"line {number}: {line!r} is not {self.one} ({' '.join(error.messages)})")
        if problems:
            raise ValidationError(problems)
        return list(dict.fromkeys(lines))


class ProjectAlertsForm(forms.ModelForm):
    alert_emails = TargetLines("alert_emails", "an e-mail address", "e-mail addresses", label="E-mail addresses")
    alert_webhooks = TargetLines("alert_webhooks", "an http(s) URL", "webhook URLs", label="Webhook URLs")

    class Meta:
        model = Project
        fields = ("alert_emails", "alert_webhooks")
