"""The forms admins use for database targets and storage, and the backup operation's
parameters. Secrets are write-only: never put back into a form, and an empty field on edit
keeps the stored value."""

from __future__ import annotations

import os
from typing import Any, cast

from django import forms

from apps.backups.choices import StorageKind
from apps.backups.models import BackupStorage, DatabaseTarget, clean_prefix
from apps.backups.storage import inside_allowed_roots
from apps.operations.registry import ParamsForm
from apps.services.forms import https_urls


def _secret_input() -> forms.PasswordInput:
    return forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


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
        ]
        labels = {"is_production": "Production database"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not (self.instance.pk and self.instance.has_password):
            del self.fields["forget_password"]
        else:
            self.fields["password"].help_text = (
                "A password is stored (encrypted; never shown). Type a new one to replace it, "
                "or leave empty to keep it."
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
