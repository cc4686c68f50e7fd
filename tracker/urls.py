from django.contrib import admin
from django.urls import include, path

from tracker.views import api, pages, studies

urlpatterns = [
    path("", pages.dashboard, name="dashboard"),
    path("runs/", pages.runs, name="runs"),
    path("runs/<int:run_id>/", pages.run, name="run"),
    path("runs/<int:run_id>/check/", pages.queue_check, name="queue-check"),
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
    path("api/dashboard/", api.dashboard, name="api-dashboard"),
    path("api/runs/", api.runs, name="api-runs"),
    path("api/runs/<int:run_id>/", api.run_detail, name="api-run"),
    path("api/runs/<int:run_id>/series/", api.run_series, name="api-run-series"),
    path("api/runs/<int:run_id>/histograms/", api.run_histograms, name="api-run-histograms"),
    path("api/runs/<int:run_id>/images/", api.run_images, name="api-run-images"),
    path("api/runs/<int:run_id>/layers/", api.run_layers, name="api-run-layers"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
