"""Importing a runbook: a Markdown file uploaded, or its text pasted."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.incidents.models import Incident
from apps.runbooks.models import MAX_SOURCE_CHARS
from apps.services.models import Service


class SourceForm(forms.Form):
    """The Markdown, from a file or pasted: exactly one of the two."""

    file = forms.FileField(
        label="Markdown file",
        required=False,
        help_text="A .md file in UTF-8, up to 2 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".md,.markdown,.txt,text/markdown"}),
    )
    text = forms.CharField(
        label="Or paste the Markdown",
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload = cleaned.get("file")
        text = cleaned.get("text") or ""
        if upload and text.strip():
            raise forms.ValidationError("Upload a file or paste the text, not both.")
        if upload:
            if upload.size > MAX_SOURCE_CHARS:
                raise forms.ValidationError("The file is larger than 2 MB.")
            try:
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
            cleaned["filename"] = upload.name[:255]
        else:
            cleaned["filename"] = ""
        text = text.replace("\r\n", "\n").replace("\x00", "")
        if not text.strip():
            raise forms.ValidationError("Upload a Markdown file or paste its text.")
        if len(text) > MAX_SOURCE_CHARS:
            raise forms.ValidationError("The text is longer than 2,000,000 characters.")
        cleaned["source"] = text
        return cleaned


class ImportForm(SourceForm):
    title = forms.CharField(label="Title", max_length=200)
    service = forms.ModelChoiceField(
        label="Service",
        queryset=Service.objects.order_by("name"),
        required=False,
        help_text="Leave empty for a runbook about no one service.",
    )
    field_order = ["title", "service", "file", "text"]


class StartRunForm(forms.Form):
    """Which section to run and, optionally, the open incident it is run for."""

    section = forms.CharField(widget=forms.HiddenInput, max_length=220)
    incident = forms.ModelChoiceField(
        label="For incident",
        queryset=Incident.objects.open().order_by("-pk"),
        required=False,
        empty_label="No incident",
        help_text="The run and each of its steps are written into the incident's timeline.",
    )


class StepForm(forms.Form):
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 1}),
    )


class StopRunForm(forms.Form):
    reason = forms.CharField(
        label="Why stop here",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
