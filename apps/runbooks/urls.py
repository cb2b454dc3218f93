from __future__ import annotations

from django.urls import path

from apps.runbooks import views

app_name = "runbooks"
urlpatterns = [
    path("", views.runbook_list, name="list"),
    path("import/", views.runbook_import, name="import"),
    path("<slug:slug>/", views.runbook_detail, name="detail"),
    path("<slug:slug>/reimport/", views.runbook_reimport, name="reimport"),
    path("<slug:slug>/versions/", views.runbook_versions, name="versions"),
    path("<slug:slug>/coverage/", views.runbook_coverage, name="coverage"),
]
