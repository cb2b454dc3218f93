from __future__ import annotations

from django.urls import path

from apps.services import views

app_name = "services"
# Fixed paths first: a service's slug may not take one of their names (ServiceForm).
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("new/", views.service_create, name="create"),
    path("environments/", views.environment_list, name="environments"),
    path("environments/new/", views.environment_create, name="environment-create"),
    path("environments/<int:pk>/edit/", views.environment_edit, name="environment-edit"),
    path("clusters/", views.cluster_list, name="clusters"),
    path("clusters/new/", views.cluster_create, name="cluster-create"),
    path("clusters/<int:pk>/edit/", views.cluster_edit, name="cluster-edit"),
    path("clusters/<int:pk>/check/", views.cluster_check, name="cluster-check"),
    path("freezes/", views.freeze_list, name="freezes"),
    path("freezes/new/", views.freeze_create, name="freeze-create"),
    path("freezes/<int:pk>/lift/", views.freeze_lift, name="freeze-lift"),
    path("targets/<int:pk>/edit/", views.target_edit, name="target-edit"),
    path("targets/<int:pk>/deployment/", views.deployment_panel, name="deployment"),
    path("<slug:slug>/", views.service_detail, name="detail"),
    path("<slug:slug>/edit/", views.service_edit, name="edit"),
    path("<slug:slug>/targets/new/", views.target_create, name="target-create"),
]
