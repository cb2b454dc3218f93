"""The admins' form for Redis targets and the parameter forms of the datastore operations.
Every parameter is checked against the live server when the form is validated (the pid
exists and is not the portal, the table exists), and again by the handler on the worker."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.backups.models import DatabaseTarget
from apps.backups.postgres import DatabaseProblem
from apps.datastores import postgres
from apps.datastores.models import RedisTarget
from apps.datastores.redis_client import is_everything
from apps.operations.registry import ParamsForm


class RedisTargetForm(forms.ModelForm):
    password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        max_length=1000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Encrypted at rest and never shown again. Leave empty to keep the stored one.",
    )
    forget_password = forms.BooleanField(
        label="Remove the stored password", required=False, initial=False
    )

    class Meta:
        model = RedisTarget
        fields = [
            "name",
            "service",
            "url",
            "db",
            "tls",
            "bullmq_queues",
            "celery_queues",
            "extra_keys",
            "is_production",
        ]
        widgets = {
            "bullmq_queues": forms.Textarea(attrs={"rows": 3}),
            "celery_queues": forms.Textarea(attrs={"rows": 2}),
            "extra_keys": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance.pk or not self.instance.has_password:
            del self.fields["forget_password"]


def _database(target_id: str) -> DatabaseTarget:
    return DatabaseTarget.objects.get(pk=target_id)


class BackendForm(ParamsForm):
    """A pid of the server, checked now: it exists and is not the portal's own connection."""

    pid = forms.IntegerField(label="Backend pid", min_value=1, max_value=2**31 - 1)

    def clean_pid(self) -> int:
        pid: int = self.cleaned_data["pid"]
        try:
            postgres.look_up_backend(_database(self.target.id), pid)
        except (postgres.BackendRefused, DatabaseProblem) as exc:
            raise ValidationError(str(exc)) from None
        return pid


class VacuumForm(ParamsForm):
    table = forms.CharField(
        label="Table",
        required=False,
        max_length=200,
        help_text="schema.table (or a table of the search path); empty for the whole database.",
    )

    def clean_table(self) -> str:
        name: str = self.cleaned_data["table"].strip()
        if not name:
            return ""
        try:
            schema, table = postgres.look_up_table(_database(self.target.id), name)
        except (postgres.TableRefused, DatabaseProblem) as exc:
            raise ValidationError(str(exc)) from None
        return f"{schema}.{table}"


def _redis(target_id: str) -> RedisTarget:
    return RedisTarget.objects.get(pk=target_id)


class DeleteKeysForm(ParamsForm):
    pattern = forms.CharField(
        label="Key pattern",
        max_length=500,
        help_text="A glob as SCAN MATCH takes it: sessions:*, bull:emails:*:logs.",
    )
    confirm_everything = forms.CharField(
        label="Type * again to delete every key",
        required=False,
        max_length=10,
        help_text="Only for the pattern *: it deletes every key of this database.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        pattern = cleaned.get("pattern") or ""
        if pattern and is_everything(pattern) and cleaned.get("confirm_everything") != pattern:
            self.add_error(
                "confirm_everything",
                f"The pattern {pattern!r} matches every key of the database: type it again "
                "here to confirm.",
            )
        return cleaned


class FailedQueueForm(ParamsForm):
    queue = forms.ChoiceField(label="BullMQ queue")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target = RedisTarget.objects.filter(pk=self.target.id).first()
        names = target.bullmq_names if target else []
        self.fields["queue"].choices = [(name, name) for name in names]  # type: ignore[attr-defined]


class FlushForm(ParamsForm):
    confirm_db = forms.IntegerField(
        label="Type the database number to confirm",
        min_value=0,
        help_text="FLUSHDB deletes every key of this database number, and nothing else.",
    )

    def clean_confirm_db(self) -> int:
        typed: int = self.cleaned_data["confirm_db"]
        target = _redis(self.target.id)
        if typed != target.db:
            raise ValidationError(
                f"This target is database {target.db}; you typed {typed}. Nothing was deleted."
            )
        return typed
