from __future__ import annotations

from django.urls import path

from apps.metrics import alert_views, alertmanager, panel_views, views

app_name = "metrics"
# B (charts, panels) and C (alerts) add their paths below, one line each.
urlpatterns = [
    path("services/targets/<int:pk>/metrics/panel/", panel_views.target_panel, name="target-panel"),
    path("metrics/connection/", views.connection, name="connection"),
    path("metrics/connection/check/", views.connection_check, name="connection-check"),
    path("services/<int:service_id>/metrics/", views.definitions, name="definitions"),
    path(
        "services/<int:service_id>/metrics/new/",
        views.definition_create,
        name="definition-create",
    ),
    path(
        "services/<int:service_id>/metrics/<int:pk>/edit/",
        views.definition_edit,
        name="definition-edit",
    ),
    path("alerts/", alert_views.alert_list, name="alerts"),
    path("alerts/<int:pk>/acknowledge/", alert_views.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<int:pk>/silence/", alert_views.alert_silence, name="alert-silence"),
    path("alerts/silences/<int:pk>/lift/", alert_views.silence_lift, name="silence-lift"),
    path("alerts/services/<int:pk>/", alert_views.service_alerting, name="service-alerting"),
    path("api/alertmanager/", alertmanager.receive, name="alertmanager"),
]
