from __future__ import annotations

from django.urls import URLPattern, path

from apps.incidents import policy_views, review_views, views

app_name = "incidents"
urlpatterns: list[URLPattern] = []

# Post-mortems, the managers' follow-up list and the figures (review_views.py).
urlpatterns += [
    path("follow-up/", review_views.follow_up, name="follow_up"),
    path("figures/", review_views.figures, name="figures"),
    path("<int:pk>/postmortem/", review_views.postmortem, name="postmortem"),
    path(
        "<int:pk>/postmortem/complete/",
        review_views.postmortem_complete,
        name="postmortem_complete",
    ),
    path("<int:pk>/postmortem/actions/", review_views.action_add, name="action_add"),
    path("<int:pk>/postmortem.md", review_views.postmortem_markdown, name="postmortem_markdown"),
    path("action-items/<int:item_pk>/done/", review_views.action_done, name="action_done"),
]

# The admins' severities table and escalation policies (policy_views.py).
urlpatterns += [
    path("severities/", policy_views.severity_list, name="severities"),
    path("severities/<int:pk>/", policy_views.severity_edit, name="severity_edit"),
    path("policies/", policy_views.policy_list, name="policies"),
    path("policies/add/", policy_views.policy_add, name="policy_add"),
    path("policies/<int:pk>/", policy_views.policy_edit, name="policy_edit"),
]

# The incident pages: list, declare, the incident with its live timeline, its changes (views.py).
urlpatterns += [
    path("", views.incident_list, name="list"),
    path("declare/", views.declare, name="declare"),
    path("<int:pk>/", views.incident_detail, name="detail"),
    path("<int:pk>/acknowledge/", views.acknowledge, name="acknowledge"),
    path("<int:pk>/note/", views.add_note, name="note"),
    path("<int:pk>/update/", views.post_update, name="update"),
    path("<int:pk>/state/", views.change_state, name="state"),
    path("<int:pk>/severity/", views.change_severity, name="severity"),
    path("<int:pk>/role/", views.hand_over_role, name="role"),
    path("<int:pk>/affected/", views.change_affected, name="affected"),
    path("<int:pk>/resolve/", views.resolve, name="resolve"),
    path("<int:pk>/close/", views.close, name="close"),
]
