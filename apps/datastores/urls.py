from __future__ import annotations

from django.urls import path

from apps.datastores import views

app_name = "datastores"
urlpatterns = [
    path("", views.datastore_list, name="list"),
    path("postgres/<int:pk>/", views.postgres_console, name="postgres"),
    path("postgres/<int:pk>/panel/", views.postgres_panel, name="postgres-panel"),
    path("redis/new/", views.redis_create, name="redis-create"),
    path("redis/<int:pk>/", views.redis_console, name="redis"),
    path("redis/<int:pk>/panel/", views.redis_panel, name="redis-panel"),
    path("redis/<int:pk>/edit/", views.redis_edit, name="redis-edit"),
    path("redis/<int:pk>/check/", views.redis_check, name="redis-check"),
]
