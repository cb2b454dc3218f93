"""/reports/: delivery and incident-response figures for managers (apps.audit.reports)."""

from __future__ import annotations

from django.urls import path

from apps.audit import views

app_name = "reports"
urlpatterns = [
    path("", views.report, name="index"),
]
