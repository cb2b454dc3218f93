"""The forms admins use for database targets, storage and integrity checks, and the
parameters of the backup, restore and test restore operations. Secrets are write-only: never
put back into a form, and an empty field on edit keeps the stored value."""

from __future__ import annotations

import os
from datetime import UTC
from typing import Any, cast

from django import forms
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.template.defaultfilters import pluralize

from apps.backups import retention
from apps.backups.checks import clean_check_sql, try_check_sql
from apps.backups.choices import StorageKind
from apps.backups.dumps import human_bytes
from apps.backups.models import (
    Backup,
    BackupStorage,
    DatabaseTarget,
    IntegrityCheck,
    clean_prefix,
)
from apps.backups.postgres import DatabaseProblem
from apps.backups.restores import user_relations
from apps.backups.storage import inside_allowed_roots
from apps.operations.registry import ParamsForm
from apps.services.forms import https_urls


def _secret_input() -> forms.PasswordInput:
    return forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


POLICY_FIELDS = ("freshness_hours", "keep_daily", "keep_weekly", "keep_monthly")


class DatabaseTargetForm(forms.ModelForm):
    password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        max_length=1000,
        widget=_secret_input(),
        help_text="Encrypted at rest and never shown again. Leave empty to keep the stored "
        "one (or for a server that needs none).",
    )
    forget_password = forms.BooleanField(
        label="Remove the stored password", required=False, initial=False
    )
    auto_prune_reason = forms.CharField(
        label="Why prune automatically",
        required=False,
        max_length=500,
        help_text="Required to turn automatic pruning on: your consent and this reason stand "
        "for every prune it starts, and are recorded.",
    )

    class Meta:
        model = DatabaseTarget
        fields = [
            "name",
            "service",
            "host",
            "port",
            "database",
            "user",
            "ssl_mode",
            "storage",
            "is_production",
            "is_scratch",
            "schedule",
            "freshness_hours",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "auto_prune",
        ]
        labels = {"is_production": "Production database"}

    # The password right after the user, with the rest of the connection.
    field_order = [*Meta.fields[: Meta.fields.index("user") + 1], "password", "forget_password"]

    def clean_schedule(self) -> str:
        return " ".join(str(self.cleaned_data.get("schedule") or "").split())

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # Left empty: the policy stays as it is (the defaults for a new target).
        for name in POLICY_FIELDS:
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = getattr(self.instance, name)
        # Still the stored value here: the form's values reach the instance after clean().
        turned_on = cleaned.get("auto_prune") and not self.instance.auto_prune
        if turned_on and not cleaned.get("auto_prune_reason"):
            self.add_error(
                "auto_prune_reason",
                "Say why backups past the policy may be deleted without asking each time.",
            )
        return cleaned

    def __init__(
        self,
        *args: Any,
        actor: User | AnonymousUser | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        for name in POLICY_FIELDS:
            self.fields[name].required = False
        self._explain_auto_prune(actor)
        if not (self.instance.pk and self.instance.has_password):
            del self.fields["forget_password"]
        else:
            self.fields["password"].help_text = (
                "A password is stored (encrypted; never shown). Type a new one to replace it, "
                "or leave empty to keep it."
            )

    def _explain_auto_prune(self, actor: User | AnonymousUser | None) -> None:
        """Only someone who may prune can consent to pruning on its own; the help says what
        turning it on would delete now."""
        field = self.fields["auto_prune"]
        target = self.instance
        if actor is None or not actor.has_perm("operations.run_destructive_operation"):
            field.disabled = self.fields["auto_prune_reason"].disabled = True
            field.help_text = "Only someone allowed to prune backups can change this."
        elif target.auto_prune:
            del self.fields["auto_prune_reason"]
            by = target.auto_prune_by.get_username() if target.auto_prune_by else "nobody"
            since = target.auto_prune_since
            field.help_text = (
                f"On{f' since {since:%Y-%m-%d %H:%M} UTC' if since else ''}, as {by} "
                f"consented: {target.auto_prune_reason or '(no reason given)'}. Untick to stop."
            )
        elif target.pk:
            past = len(retention.plan(target).delete)
            field.help_text += (
                f" Turning it on deletes the {past} backup{pluralize(past)} now past the "
                "policy within the hour."
                if past
                else " No backup is past the policy now."
            )


class BackupStorageForm(forms.ModelForm):
    access_key_id = forms.CharField(
        label="Access key id",
        required=False,
        max_length=128,
        widget=_secret_input(),
        help_text="With the secret key below; both encrypted at rest and never shown again. "
        "Leave both empty to use the workers' default credentials (environment, instance "
        "role), or to keep the stored pair on edit.",
    )
    secret_access_key = forms.CharField(
        label="Secret access key",
        required=False,
        strip=False,
        max_length=256,
        widget=_secret_input(),
    )
    forget_credentials = forms.BooleanField(
        label="Remove the stored keys (use the default credential chain)", required=False
    )

    class Meta:
        model = BackupStorage
        fields = [
            "name",
            "kind",
            "directory",
            "bucket",
            "region",
            "endpoint_url",
            "prefix",
            "server_side_encryption",
            "kms_key_id",
        ]
        formfield_callback = https_urls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not (self.instance.pk and self.instance.has_credentials):
            del self.fields["forget_credentials"]

    def clean_prefix(self) -> str:
        return clean_prefix(str(self.cleaned_data.get("prefix") or ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("kind") == StorageKind.LOCAL:
            directory = str(cleaned.get("directory") or "").strip()
            if not directory:
                self.add_error("directory", "Give the directory backups are written to.")
            elif not os.path.isabs(directory) or ".." in directory.split("/"):
                self.add_error("directory", "Give an absolute path without '..'.")
            elif not inside_allowed_roots(directory):
                self.add_error(
                    "directory",
                    "This directory is outside those backups may use (BACKUP_LOCAL_ROOTS).",
                )
            else:
                cleaned["directory"] = os.path.normpath(directory)
        elif cleaned.get("kind") == StorageKind.S3:
            if not cleaned.get("bucket"):
                self.add_error("bucket", "Give the bucket backups are written to.")
            key_id = cleaned.get("access_key_id") or ""
            secret = cleaned.get("secret_access_key") or ""
            if bool(key_id) != bool(secret):
                self.add_error(
                    "secret_access_key",
                    "Give both the access key id and the secret key, or neither.",
                )
        return cleaned


class BackupParamsForm(ParamsForm):
    """Which storage this one backup goes to; the target's own storage unless chosen."""

    storage = forms.TypedChoiceField(label="Storage", coerce=int, required=False, empty_value=None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["storage"])
        found = (
            DatabaseTarget.objects.select_related("storage").filter(pk=self.target.id).first()
            if self.target.id.isdigit()
            else None
        )
        default = f"Its usual storage: {found.storage} ({found.storage.location})" if found else ""
        field.choices = [("", default or "Its usual storage")] + [
            (storage.pk, f"{storage.name} ({storage.location})")
            for storage in BackupStorage.objects.all()
        ]


# How many backups a restore form offers in its list (the one chosen is always there).
BACKUPS_OFFERED = 20


def backup_label(backup: Backup) -> str:
    when = (backup.finished_at or backup.started_at).astimezone(UTC)
    return (
        f"#{backup.pk} · {backup.target.name} · {when:%Y-%m-%d %H:%M} UTC · "
        f"{human_bytes(backup.size_bytes or 0)}"
    )


def _target_of(form: ParamsForm) -> DatabaseTarget | None:
    if not form.target.id.isdigit():
        return None
    return DatabaseTarget.objects.select_related("storage").filter(pk=form.target.id).first()


def _offer_backups(form: ParamsForm, target: DatabaseTarget | None, blank: str = "") -> None:
    """The backup list: the target's newest good backups, plus the one asked for (from the
    URL or the submitted data), which may be another target's."""
    raw = form.data.get(form.add_prefix("backup")) if form.is_bound else form.initial.get("backup")
    asked = int(str(raw)) if str(raw or "").isdigit() else None
    offered = list(
        Backup.objects.good()
        .filter(target=target)
        .select_related("target")
        .order_by("-finished_at", "-pk")[:BACKUPS_OFFERED]
        if target
        else []
    )
    if asked and asked not in {backup.pk for backup in offered}:
        extra = Backup.objects.good().select_related("target").filter(pk=asked).first()
        offered = [extra, *offered] if extra else offered
    choices = [(backup.pk, backup_label(backup)) for backup in offered]
    field = form.fields["backup"]
    field.widget.choices = [("", blank or "Choose a backup"), *choices]  # type: ignore[attr-defined]


def _good_backup(backup_id: int) -> Backup:
    backup = Backup.objects.select_related("target").filter(pk=backup_id).first()
    if backup is None:
        raise ValidationError(f"There is no backup #{backup_id}.")
    if not backup.is_good:
        raise ValidationError(
            f"Backup #{backup_id} {backup.get_state_display().lower()}: only a good "
            "(succeeded) backup can be restored."
        )
    return backup


class RestoreParamsForm(ParamsForm):
    """What goes over the target's database: a good backup (of this target or another), the
    database's name typed to confirm, and whether to skip the safety backup, which only an
    empty database or a scratch target may."""

    backup = forms.IntegerField(label="Backup to restore", widget=forms.Select)
    confirm_database = forms.CharField(
        label="Type the database name to confirm",
        max_length=63,
        strip=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    skip_safety_backup = forms.BooleanField(
        label="Skip the safety backup",
        required=False,
        help_text="Only for an empty database or a scratch target (checked now, and again "
        "before the restore). Otherwise the database is backed up first.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.destination = _target_of(self)
        _offer_backups(self, self.destination)
        if self.destination is not None:
            self.fields["confirm_database"].help_text = (
                f"Type {self.destination.database} exactly: everything in it is replaced by "
                "the backup's contents."
            )

    def clean_backup(self) -> int:
        backup_id: int = self.cleaned_data["backup"]
        _good_backup(backup_id)
        return backup_id

    def clean_confirm_database(self) -> str:
        typed: str = self.cleaned_data["confirm_database"]
        if self.destination is not None and typed != self.destination.database:
            raise ValidationError(
                f"{typed!r} is not the name of the database to overwrite: type "
                f"{self.destination.database} exactly. Nothing was done."
            )
        return typed

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        target = self.destination
        if not cleaned.get("skip_safety_backup") or target is None or target.is_scratch:
            return cleaned
        try:
            relations = user_relations(target)
        except DatabaseProblem as exc:
            self.add_error(
                "skip_safety_backup",
                f"Cannot check that {target.database} is empty ({exc}): keep the safety backup.",
            )
            return cleaned
        if relations:
            self.add_error(
                "skip_safety_backup",
                f"{target.database} is not empty ({relations} tables, views or sequences): a "
                "safety backup is required. Only an empty database or a scratch target may "
                "skip it.",
            )
        return cleaned


class ScratchRestoreParamsForm(ParamsForm):
    """The test restore's parameters: which of the target's good backups to prove (into a
    scratch database); the latest when none is chosen."""

    backup = forms.IntegerField(label="Backup", required=False, widget=forms.Select)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = _target_of(self)
        _offer_backups(self, self.source, blank="The latest good backup (when it runs)")

    def clean_backup(self) -> int | None:
        backup_id: int | None = self.cleaned_data.get("backup")
        if backup_id is None:
            if (
                self.source is not None
                and not Backup.objects.good().filter(target=self.source).exists()
            ):
                raise ValidationError(f"{self.source.name} has no good backup yet: take one first.")
            return None
        backup = _good_backup(backup_id)
        if self.source is not None and backup.target_id != self.source.pk:
            raise ValidationError(
                f"Backup #{backup_id} is of {backup.target.name}, not {self.source.name}."
            )
        return backup_id


class IntegrityCheckForm(forms.ModelForm):
    """An admin's check; saved only once its SQL ran on the target, read-only, and gave a
    number inside the range it declares."""

    class Meta:
        model = IntegrityCheck
        fields = ["name", "sql", "min_value", "max_value"]
        widgets = {
            "sql": forms.Textarea(
                attrs={"rows": 4, "class": "font-monospace", "spellcheck": "false"}
            ),
        }
        help_texts = {
            "min_value": "The smallest acceptable number (empty: no lower bound).",
            "max_value": "The largest acceptable number (empty: no upper bound).",
        }

    def __init__(self, *args: Any, target: DatabaseTarget, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = target
        self.instance.target = target
        self.tried_value: str = ""

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        taken = IntegrityCheck.objects.filter(target=self.target, name=name).exclude(
            pk=self.instance.pk
        )
        if taken.exists():
            raise ValidationError(f"{self.target.name} already has a check called {name!r}.")
        return name

    def clean_sql(self) -> str:
        return clean_check_sql(str(self.cleaned_data["sql"]))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("min_value"), cleaned.get("max_value")
        if low is None and high is None and not self.has_error("min_value"):
            self.add_error("min_value", "Give the expected range: at least, at most, or both.")
        elif low is not None and high is not None and low > high:
            self.add_error("max_value", "The upper bound is below the lower one.")
        if self.errors or not cleaned.get("sql"):
            return cleaned
        try:
            value = try_check_sql(self.target, cleaned["sql"])
        except ValidationError as exc:
            self.add_error("sql", exc)
            return cleaned
        candidate = IntegrityCheck(min_value=low, max_value=high)
        if not candidate.accepts(value):
            self.add_error(
                "sql",
                f"On {self.target.database} it returns {value} now, outside the expected "
                f"range ({candidate.expected_label}): every restore would fail it. Adjust "
                "the range or the query.",
            )
        self.tried_value = str(value)
        return cleaned
