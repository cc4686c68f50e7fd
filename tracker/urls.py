from django.contrib import admin
from django.contrib.staticfiles.storage import staticfiles_storage
from django.urls import include, path
from django.views.generic import RedirectView

from tracker.views import api, client, dashboard, health, pages, projects, studies, tokens

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("", dashboard.dashboard, name="dashboard"),
    path("runs/", pages.runs, name="runs"),
    path("runs/<int:run_id>/", pages.run, name="run"),
    path("runs/<int:run_id>/check/", pages.queue_check, name="queue-check"),
    path("runs/<int:run_id>/cancel/", pages.cancel_run, name="run-cancel"),
    path("runs/<int:run_id>/tensorboard/", pages.tensorboard_export, name="run-tensorboard"),
    path("compare/", pages.compare, name="compare"),
    path("studies/", studies.study_list, name="studies"),
    path("studies/<int:study_id>/", studies.study_page, name="study"),
    path("studies/<int:study_id>/report/", studies.study_report, name="study-report"),
    path("studies/<int:study_id>/promote/", studies.study_promote, name="study-promote"),
    path("studies/<int:study_id>/ensemble/", studies.study_ensemble, name="study-ensemble"),
    path("studies/<int:study_id>/notes/", studies.study_notes, name="study-notes"),
    path("api/studies/", studies.api_studies, name="api-studies"),
    path("api/studies/<int:study_id>/", studies.api_study, name="api-study"),
    path("api/compare/", api.compare, name="api-compare"),
    path("api/dashboard/", dashboard.api_dashboard, name="api-dashboard"),
    path("api/runs/", api.runs, name="api-runs"),
    path("api/jobs/", api.jobs, name="api-jobs"),
    path("api/runs/start/", client.start, name="api-run-start"),
    path("api/runs/<int:run_id>/ingest/", client.ingest_payload, name="api-run-ingest"),
    path("api/runs/<int:run_id>/", api.run_detail, name="api-run"),
    path("api/runs/<int:run_id>/cancel/", api.cancel_run, name="api-run-cancel"),
    path("api/runs/<int:run_id>/series/", api.run_series, name="api-run-series"),
    path("api/runs/<int:run_id>/histograms/", api.run_histograms, name="api-run-histograms"),
    path("api/runs/<int:run_id>/images/", api.run_images, name="api-run-images"),
    path("api/runs/<int:run_id>/layers/", api.run_layers, name="api-run-layers"),
    path("projects/", projects.project_list, name="projects"),
    path("projects/<int:project_id>/alerts/", projects.project_alerts, name="project-alerts"),
    path("projects/<int:project_id>/alerts/test/", projects.project_alerts_test, name="project-alerts-test"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", tokens.revoke, name="token-revoke"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # browsers ask for /favicon.ico on pages that name none (the admin's)
    path("favicon.ico", RedirectView.as_view(url=staticfiles_storage.url("favicon.svg"), permanent=True)),
]
