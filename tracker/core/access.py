"""Who sees what: a user sees the runs of the projects they are a member of; staff (who
run the job queue) see every project. Every page and API call reads runs through here, so
another project's run is simply not found (404), never "forbidden": its existence is not
disclosed either."""

from __future__ import annotations

from django.db.models import QuerySet

from tracker.models import Project, Run


def sees_everything(user) -> bool:
    return bool(user.is_active and user.is_staff)


def visible_projects(user) -> QuerySet[Project]:
    if sees_everything(user):
        return Project.objects.all()
    return Project.objects.filter(members=user)


def visible_runs(user) -> QuerySet[Run]:
    if sees_everything(user):
        return Run.objects.all()
    return Run.objects.filter(project__members=user)


def may_use_project(user, project: Project) -> bool:
    return sees_everything(user) or project.members.filter(pk=user.pk).exists()
