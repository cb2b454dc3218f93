from __future__ import annotations

from django.urls import path

from apps.runbooks import run_views, views

app_name = "runbooks"
urlpatterns = [
    path("", views.runbook_list, name="list"),
    path("import/", views.runbook_import, name="import"),
    path("runs/", run_views.run_list, name="runs"),
    path("runs/<int:pk>/", run_views.run_detail, name="run"),
    path("runs/<int:pk>/stop/", run_views.run_stop, name="run-stop"),
    path("runs/steps/<int:pk>/", run_views.step_finish, name="run-step"),
    path("<slug:slug>/", views.runbook_detail, name="detail"),
    path("<slug:slug>/start/", run_views.run_start, name="run-start"),
    path("<slug:slug>/reimport/", views.runbook_reimport, name="reimport"),
    path("<slug:slug>/versions/", views.runbook_versions, name="versions"),
    path("<slug:slug>/coverage/", views.runbook_coverage, name="coverage"),
]
