"""The job queue, in Django admin: runs by status, cancel and retry."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from tracker import runs as run_actions
from tracker.models import ApiToken, Project, Run, Worker

admin.site.site_header = "Trainwatch administration"
admin.site.site_title = "Trainwatch"


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "tags", "project", "status", "queue", "worker", "device", "progress",
                    "best_val_accuracy", "created_at", "heartbeat_at")
    list_filter = ("status", "queue", "project")
    search_fields = ("name", "worker", "tags")
    ordering = ("-created_at",)
    actions = ("cancel", "retry")
    readonly_fields = ("status", "celery_task_id", "worker", "device", "created_at", "started_at", "finished_at",
                       "heartbeat_at", "epoch", "steps_done", "total_steps", "steps_per_epoch", "best_val_accuracy",
                       "final_loss", "message", "error", "cancel_requested", "config", "queue", "created_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are created through the API or CLI, which validate the config

    @admin.display(description="progress")
    def progress(self, run: Run) -> str:
        if not run.total_steps:
            return "-"
        return format_html("{} / {} steps", run.steps_done, run.total_steps)

    @admin.action(description="Cancel selected runs (queued: never start; running: stop within seconds)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        done = sum(run_actions.request_cancel(run) for run in queryset)
        skipped = queryset.count() - done
        self.message_user(request, f"Cancel requested for {done} run(s)."
                          + (f" {skipped} had already ended." if skipped else ""), messages.SUCCESS)

    @admin.action(description="Retry selected ended runs (from scratch)")
    def retry(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        done = sum(run_actions.retry(run) for run in queryset)
        skipped = queryset.count() - done
        self.message_user(request, f"Requeued {done} run(s)."
                          + (f" {skipped} were still queued or running." if skipped else ""), messages.SUCCESS)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued by `manage.py create_token` (the clear text is shown once); here they
    are listed and revoked (deleted)."""

    list_display = ("name", "user", "created_at", "last_used_at")
    readonly_fields = ("user", "name", "digest", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """The workers: live (answering Celery's ping now), their queues and device, what each trains."""

    list_display = ("name", "live", "queues", "device", "current_run", "seen_at", "started_at", "torch_version")
    ordering = ("name",)
    readonly_fields = ("name", "hostname", "queues", "device", "torch_version", "started_at", "seen_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        from tracker.dashboard import workers

        self._live = {entry["name"] for entry in workers()}  # one cached ping per page
        return super().changelist_view(request, extra_context)

    @admin.display(boolean=True, description="live")
    def live(self, worker: Worker) -> bool:
        return worker.name in getattr(self, "_live", set())

    @admin.display(description="training")
    def current_run(self, worker: Worker) -> str:
        run = Run.objects.filter(status=Run.Status.RUNNING, worker=worker.name).first()
        if run is None:
            return "-"
        return format_html('<a href="{}">#{} {}</a> step {} / {}', run.get_absolute_url(), run.pk, run.name,
                           run.steps_done, run.total_steps)
