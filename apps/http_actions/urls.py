from __future__ import annotations

from django.urls import path

from apps.http_actions import views

app_name = "http_actions"

urlpatterns = [
    path("services/<slug:slug>/new/", views.action_create, name="create"),
    path("<int:pk>/edit/", views.action_edit, name="edit"),
]
