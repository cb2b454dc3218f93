from __future__ import annotations

from django.db import models


class Method(models.TextChoices):
    GET = "GET", "GET"
    POST = "POST", "POST"
    PUT = "PUT", "PUT"
    PATCH = "PATCH", "PATCH"
    DELETE = "DELETE", "DELETE"


class ParameterType(models.TextChoices):
    INTEGER = "integer", "Integer"
    STRING = "string", "String"
