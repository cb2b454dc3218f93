from __future__ import annotations

from django.apps import AppConfig


class HttpActionsConfig(AppConfig):
    name = "apps.http_actions"
    label = "http_actions"
    verbose_name = "Custom HTTP actions"
