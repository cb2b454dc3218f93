from __future__ import annotations

from django.urls import path

from apps.operations import views

app_name = "operations"
urlpatterns = [
    path("", views.operation_list, name="list"),
    path("start/<str:kind_name>/", views.operation_start, name="start"),
    path("<int:pk>/", views.operation_detail, name="detail"),
    path("<int:pk>/cancel/", views.operation_cancel, name="cancel"),
    path("<int:pk>/approve/", views.operation_approve, name="approve"),
    path("<int:pk>/reject/", views.operation_reject, name="reject"),
    path("<int:pk>/run/", views.operation_run, name="run"),
    path("<int:pk>/parameters/", views.operation_edit, name="edit"),
]
