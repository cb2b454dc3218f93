from __future__ import annotations

from django.urls import include, path

from apps.common import health, views

urlpatterns = [
    path("", views.home, name="home"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("health", health.report, name="health"),
    path("metrics", health.metrics, name="metrics"),
    path("accounts/", include("apps.accounts.urls")),
    path("operations/", include("apps.operations.urls")),
    path("audit/", include("apps.audit.urls")),
    path("reports/", include("apps.audit.report_urls")),
    path("services/", include("apps.services.urls")),
    path("backups/", include("apps.backups.urls")),
    path("datastores/", include("apps.datastores.urls")),
    path("incidents/", include("apps.incidents.urls")),
    path("maintenance/", include("apps.maintenance.urls")),
    path("runbooks/", include("apps.runbooks.urls")),
    path("http-actions/", include("apps.http_actions.urls")),
    # /metrics/connection/, /services/<id>/metrics/, /alerts/, /api/alertmanager/.
    path("", include("apps.metrics.urls")),
    # /status/ (the public status page, no login) and /status.json.
    path("", include("apps.statuspage.urls")),
]

handler403 = "apps.common.views.forbidden"
handler404 = "apps.common.views.not_found"
handler500 = "apps.common.views.server_error"
