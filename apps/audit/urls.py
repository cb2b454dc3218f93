from __future__ import annotations

from django.urls import path

from apps.audit import views

app_name = "audit"
urlpatterns = [
    path("", views.event_list, name="list"),
    path("export.csv", views.export_csv, name="export-csv"),
    path("export.jsonl", views.export_jsonl, name="export-jsonl"),
    path("integrity/", views.chain, name="integrity"),
    path("review/", views.review_queue, name="review"),
    path("users/<int:pk>/", views.user_history, name="user-history"),
]
