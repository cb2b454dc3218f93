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
    path("targets/<int:pk>/checks/new/", views.check_create, name="check-create"),
    path("checks/<int:pk>/edit/", views.check_edit, name="check-edit"),
    path("checks/<int:pk>/delete/", views.check_delete, name="check-delete"),
    path("backup/<int:pk>/restore/", views.backup_restore, name="backup-restore"),
    path("backup/<int:pk>/download/", views.backup_download, name="backup-download"),
    path("storage/", views.storage_list, name="storage"),
    path("storage/new/", views.storage_create, name="storage-create"),
    path("storage/<int:pk>/edit/", views.storage_edit, name="storage-edit"),
]
