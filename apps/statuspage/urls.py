from __future__ import annotations

from django.urls import path

from apps.statuspage import views

# Mounted at the root: the page lives at /status/ and the machines' copy at /status.json.
app_name = "statuspage"
urlpatterns = [
    path("status/", views.status_page, name="page"),
    path("status.json", views.status_json, name="json"),
    path("status/components/", views.component_list, name="components"),
    path("status/components/new/", views.component_create, name="component-create"),
    path("status/components/<int:pk>/edit/", views.component_edit, name="component-edit"),
    path("status/components/<int:pk>/move/", views.component_move, name="component-move"),
    path("status/components/<int:pk>/remove/", views.component_remove, name="component-remove"),
]
