"""The job queue, in Django admin: runs by status and queue position, priority (editable
while queued), cancel, retry, clone-and-edit, and the workers."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from tracker.core import runs as run_actions
from tracker.core.dashboard import live_worker_names
from tracker.core.lifecycle import request_cancel
from tracker.forms import CloneForm, RunPriorityForm, StudyForm, add_config_errors
from tracker.models import Alert, ApiToken, Project, Run, Study, Worker
from trainer.config import ConfigError
from trainer.entry import BUILTIN

admin.site.site_header = "Trainwatch administration"
admin.site.site_title = "Trainwatch"


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "member_count", "created_at")
    search_fields = ("name",)
    filter_horizontal = ("members",)

    @admin.display(description="members")
    def member_count(self, project: Project) -> int:
        return project.members.count()


class QueueFilter(admin.SimpleListFilter):
    """The queues the workers consume and the two every run is sent to: not a DISTINCT over every run."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = {"cpu", "gpu"} | {name for queues in Worker.objects.values_list("queues", flat=True) for name in queues}
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        return queryset.filter(queue=self.value()) if self.value() else queryset


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "tags",
        "project",
        "status",
        "queue",
        "position",
        "priority",
        "worker",
        "device",
        "progress",
        "attempts",
        "best_val_accuracy",
        "created_at",
        "heartbeat_at",
    )
    list_display_links = ("id", "name")
    list_editable = ("priority",)
    list_filter = ("status", QueueFilter, "project")
    search_fields = ("name", "worker", "tags")
    ordering = ("-created_at", "-id")  # run_sort_created_desc
    list_per_page = 50  # each row is a form (the priority)
    actions = ("cancel", "retry", "clone")
    readonly_fields = (
        "status",
        "celery_task_id",
        "worker",
        "device",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "epoch",
        "steps_done",
        "total_steps",
        "steps_per_epoch",
        "best_val_accuracy",
        "final_loss",
        "message",
        "error",
        "cancel_requested",
        "config",
        "queue",
        "created_by",
        "attempts",
        "resumed_from_step",
        "project",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are created through the API, CLI or "clone and edit", which validate the config

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> type[RunPriorityForm]:
        return RunPriorityForm

    def get_readonly_fields(self, request: HttpRequest, obj: Run | None = None) -> tuple[str, ...]:
        if obj is not None and obj.status != Run.Status.QUEUED:
            return (*self.readonly_fields, "priority")
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Run, form: Any, change: bool) -> None:
        """Only the fields the form changed, and the priority only while queued: a plain save()
        would write back every column and undo what the worker wrote meanwhile."""
        changed = {field: getattr(obj, field) for field in form.changed_data if field != "priority"}
        if changed:
            Run.objects.filter(pk=obj.pk).update(**changed)
        if "priority" in form.changed_data and not run_actions.set_priority(obj, obj.priority):
            self.message_user(request, f"Run #{obj.pk} left the queue; its priority was not changed.", messages.WARNING)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        self._positions = run_actions.queue_positions()  # one query per page
        return super().changelist_view(request, extra_context)

    @admin.display(description="queue position")
    def position(self, run: Run) -> str:
        position = getattr(self, "_positions", {}).get(run.pk)
        return f"{position} in {run.queue}" if position is not None else "-"

    def get_urls(self) -> list[URLPattern]:
        clone = path("<int:run_id>/clone/", self.admin_site.admin_view(self.clone_view), name="tracker_run_clone")
        return [clone, *super().get_urls()]

    def clone_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        source = get_object_or_404(Run, pk=run_id)
        if request.method == "POST":
            form = CloneForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    run = run_actions.create_run(
                        data["project"], data["config"], data["name"], request.user, data["tags"], data["priority"]
                    )
                except ConfigError as error:
                    add_config_errors(form, error, tuple(form.fields))
                else:
                    self.message_user(
                        request, f"Queued run #{run.pk} {run.name}, a clone of #{source.pk}.", messages.SUCCESS
                    )
                    return HttpResponseRedirect(reverse("admin:tracker_run_change", args=[run.pk]))
        else:
            form = CloneForm(
                initial={
                    "project": source.project.name,
                    "name": f"{source.name} (clone)"[:200],
                    "tags": ", ".join(source.tags),
                    "priority": source.priority,
                    "config": json.dumps(source.config, indent=2),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Clone and edit run #{source.pk}",
            "form": form,
            "entry_points": run_actions.registered_jobs(with_errors=True),
            "source": source,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/tracker/run/clone.html", context)

    @admin.display(description="progress")
    def progress(self, run: Run) -> str:
        if not run.total_steps:
            return "-"
        return format_html("{} / {} steps", run.steps_done, run.total_steps)

    @admin.action(description="Cancel selected runs (queued: never start; running: stop within seconds)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        done = sum(request_cancel(run) for run in queryset)
        skipped = queryset.count() - done
        self.message_user(
            request,
            f"Cancel requested for {done} run(s)." + (f" {skipped} had already ended." if skipped else ""),
            messages.SUCCESS,
        )

    @admin.action(description="Clone and edit the selected run (one)")
    def clone(self, request: HttpRequest, queryset: QuerySet[Run]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one run to clone.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:tracker_run_clone", args=[queryset.get().pk]))

    @admin.action(description="Retry selected ended runs (from scratch)")
    def retry(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        external = queryset.filter(kind=Run.Kind.EXTERNAL).count()
        done = sum(run_actions.retry(run) for run in queryset)
        skipped = queryset.count() - done - external
        self.message_user(
            request,
            f"Requeued {done} run(s)."
            + (f" {skipped} were still queued or running." if skipped else "")
            + (
                f" {external} external run(s) left alone: their scripts train them, not the workers."
                if external
                else ""
            ),
            messages.SUCCESS if done or not (skipped or external) else messages.WARNING,
        )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued by `manage.py create_token` (the clear text is shown once); here they
    are listed and revoked (deleted)."""

    list_display = ("name", "user", "created_at", "last_used_at")
    readonly_fields = ("user", "name", "digest", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """What was announced, to whom, and how each target took it (tracker.core.alerts)."""

    list_display = ("subject", "key", "created_at", "attempts", "next_attempt_at")
    list_filter = ("key",)
    search_fields = ("subject",)
    readonly_fields = tuple(field.name for field in Alert._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """The workers: live (answering Celery's ping now), their queues and device, what each trains."""

    list_display = ("name", "live", "queues", "device", "jobs", "current_run", "seen_at", "started_at", "torch_version")
    ordering = ("name",)
    readonly_fields = (
        "name",
        "hostname",
        "queues",
        "device",
        "torch_version",
        "started_at",
        "seen_at",
        "entry_point_table",
    )
    exclude = ("entry_points",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        self._live = set(live_worker_names())  # one cached ping per page
        return super().changelist_view(request, extra_context)

    @admin.display(boolean=True, description="live")
    def live(self, worker: Worker) -> bool:
        return worker.name in getattr(self, "_live", set())

    @admin.display(description="entry points")
    def jobs(self, worker: Worker) -> str:
        """What it can run besides run configs (an entry point it failed to import is marked)."""
        names = [
            f"{info['name']} (import failed)" if info.get("error") else info["name"]
            for info in worker.entry_points
            if info.get("name") != BUILTIN
        ]
        return ", ".join(names) or "-"

    @admin.display(description="entry points (group trainwatch.jobs)")
    def entry_point_table(self, worker: Worker) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            (
                (
                    info.get("name", ""),
                    info.get("value", ""),
                    info.get("error")
                    or ("checked by a function" if info.get("check") else ", ".join(info.get("params") or {}) or "-"),
                    info.get("doc", ""),
                )
                for info in worker.entry_points
            ),
        )
        return format_html(
            "<table><thead><tr><th>name</th><th>function</th><th>params</th><th>about</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="training")
    def current_run(self, worker: Worker) -> str:
        run = Run.objects.filter(status=Run.Status.RUNNING, worker=worker.name).first()
        if run is None:
            return "-"
        return format_html(
            '<a href="{}">#{} {}</a> step {} / {}',
            run.get_absolute_url(),
            run.pk,
            run.name,
            run.steps_done,
            run.total_steps,
        )


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    """Studies: listed with their runs; "add" is the same validated form as the web page."""

    list_display = ("id", "name", "project", "kind", "status", "stage", "run_count", "created_at")
    list_filter = ("kind", "status", "project")
    search_fields = ("name",)
    readonly_fields = (
        "project",
        "kind",
        "spec",
        "stage_params",
        "stage",
        "status",
        "preset",
        "ensemble",
        "created_by",
        "created_at",
        "finished_at",
    )

    @admin.display(description="runs")
    def run_count(self, study: Study) -> int:
        return study.runs.count()

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StudyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            study = form.create(request.user)
            if study is not None:
                self.message_user(
                    request,
                    f"Created study #{study.pk} {study.name}: {study.runs.count()} runs queued.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:tracker_study_change", args=[study.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Add study",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/tracker/study/add.html", context)
