from __future__ import annotations

from django.urls import path

from apps.maintenance import subscription_views, views

app_name = "maintenance"

urlpatterns = [
    path("", views.window_list, name="list"),
    path("calendar/", views.month_calendar, name="calendar"),
    path("calendar/week/", views.week_calendar, name="week"),
    path("new/", views.window_create, name="create"),
    path("feed/", views.feed_link, name="feed_link"),
    path("feed/<str:token>.ics", views.feed, name="feed"),
    path("<int:pk>/", views.window_detail, name="detail"),
    path("<int:pk>/edit/", views.window_edit, name="edit"),
    path("<int:pk>/cancel/", views.window_cancel, name="cancel"),
    path("occurrences/<int:pk>/start/", views.occurrence_start, name="start"),
    path("occurrences/<int:pk>/end/", views.occurrence_end, name="end"),
    path("occurrences/<int:pk>/extend/", views.occurrence_extend, name="extend"),
    path("occurrences/<int:pk>/skip/", views.occurrence_skip, name="skip"),
    path("occurrences/<int:pk>/move/", views.occurrence_move, name="move"),
    path("steps/<int:pk>/tick/", views.step_tick, name="tick"),
    path("<int:pk>/test-message/", views.test_message, name="test_message"),
    path("subscribe/", subscription_views.subscribe, name="subscribe"),
    path("subscribe/<str:token>/", subscription_views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", subscription_views.unsubscribe, name="unsubscribe"),
]
