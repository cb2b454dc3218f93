from __future__ import annotations

from django.urls import path

from apps.backups import views

app_name = "backups"
urlpatterns = [
    path("", views.backup_list, name="list"),
    path("targets/new/", views.target_create, name="target-create"),
    path("targets/<int:pk>/", views.target_detail, name="target"),
    path("targets/<int:pk>/edit/", views.target_edit, name="target-edit"),
    path("targets/<int:pk>/check/", views.target_check, name="target-check"),
    path("storage/", views.storage_list, name="storage"),
    path("storage/new/", views.storage_create, name="storage-create"),
    path("storage/<int:pk>/edit/", views.storage_edit, name="storage-edit"),
]
