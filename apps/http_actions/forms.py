"""The admin's form for a custom HTTP action, and the parameter form its operations ask."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from apps.audit.records import MASK, mask_secrets
from apps.http_actions import parameters
from apps.http_actions.choices import ParameterType
from apps.http_actions.models import TARGET_TYPE, HttpAction
from apps.http_actions.url_templates import UnsafeTemplate, UnsafeValue, parse_template
from apps.operations.registry import ParamsForm
from apps.services.models import Service

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]{0,1000}$")
# Set by the portal itself, or secrets that belong in the token field.
_RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "cookie"}


def parse_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not _HEADER_NAME.match(name):
            raise forms.ValidationError(f"Line {number}: write a header as Name: value.")
        if not _HEADER_VALUE.match(value):
            raise forms.ValidationError(f"Line {number}: the value has characters a header cannot.")
        if name.lower() in _RESERVED_HEADERS:
            raise forms.ValidationError(f"Line {number}: the portal sets {name} itself.")
        if mask_secrets({name: value})[name] == MASK:
            raise forms.ValidationError(
                f"Line {number}: {name} looks like a secret; put it in the bearer token field, "
                "which is encrypted and never shown."
            )
        headers[name] = value
    return headers


def parse_statuses(text: str) -> list[int]:
    words = text.replace(",", " ").split()
    if not words:
        raise forms.ValidationError("Name at least one status code, e.g. 200 202.")
    statuses: list[int] = []
    for word in words:
        if not word.isdigit() or not 100 <= int(word) <= 599:
            raise forms.ValidationError(f"{word!r} is not an HTTP status code (100–599).")
        if int(word) not in statuses:
            statuses.append(int(word))
    return statuses


class HttpActionForm(forms.ModelForm):
    """The token is write-only: never put back into the form; empty on edit keeps it."""

    parameters_text = forms.CharField(
        label="Parameters",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One a line: name, then integer or string, then for a string an optional "
        f"pattern (default {parameters.DEFAULT_STRING_PATTERN}). E.g. 'id integer'.",
    )
    headers_text = forms.CharField(
        label="Headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="One a line, Name: value. Not secret: they are shown and audited.",
    )
    expected_statuses_text = forms.CharField(
        label="Expected status codes",
        initial="200",
        help_text="Any other status fails the operation, e.g. 200 202 204.",
    )
    bearer_token = forms.CharField(
        label="Bearer token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Sent as Authorization: Bearer …. Encrypted at rest and never shown again; "
        "leave empty to keep the stored one.",
    )
    clear_token = forms.BooleanField(label="Remove the stored token", required=False)

    class Meta:
        model = HttpAction
        fields = [
            "name",
            "environment",
            "description",
            "method",
            "url_template",
            "timeout_seconds",
            "destructive",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "url_template": "The service's admin API, e.g. https://api.example.com/api/v1/admin/"
            "dead-letters/{id}/reprocess. Parameters ({name}) go in the path only; their "
            "values are encoded and can never change the host or the path's segments.",
        }

    def __init__(self, *args: Any, service: Service, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self.instance.service = service
        if self.instance.pk:
            self.fields["parameters_text"].initial = parameters.as_lines(
                self.instance.parameter_specs
            )
            self.fields["headers_text"].initial = "\n".join(
                f"{name}: {value}" for name, value in self.instance.headers.items()
            )
            self.fields["expected_statuses_text"].initial = " ".join(
                str(status) for status in self.instance.expected_statuses
            )
            if self.instance.has_token:
                self.fields[
                    "bearer_token"
                ].help_text = "A token is stored (not shown). Type a new one to replace it."
        else:
            del self.fields["clear_token"]

    def clean_url_template(self) -> str:
        text = str(self.cleaned_data["url_template"]).strip()
        try:
            parse_template(text)
        except UnsafeTemplate as exc:
            raise forms.ValidationError(str(exc)) from None
        return text

    def clean_parameters_text(self) -> list[dict[str, str]]:
        try:
            specs = parameters.parse_lines(str(self.cleaned_data.get("parameters_text") or ""))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return [spec.as_dict() for spec in specs]

    def clean_headers_text(self) -> dict[str, str]:
        return parse_headers(str(self.cleaned_data.get("headers_text") or ""))

    def clean_expected_statuses_text(self) -> list[int]:
        return parse_statuses(str(self.cleaned_data.get("expected_statuses_text") or ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        url, specs = cleaned.get("url_template"), cleaned.get("parameters_text")
        if url and specs is not None:
            used = set(parse_template(url).names)
            declared = {spec["name"] for spec in specs}
            if used - declared:
                self.add_error(
                    "parameters_text",
                    "Declare every parameter of the URL: " + ", ".join(sorted(used - declared)),
                )
            if declared - used:
                self.add_error(
                    "parameters_text",
                    "Not in the URL: " + ", ".join(sorted(declared - used)),
                )
        return cleaned

    def save(self, commit: bool = True) -> HttpAction:
        action: HttpAction = super().save(commit=False)
        action.parameters = self.cleaned_data["parameters_text"]
        action.headers = self.cleaned_data["headers_text"]
        action.expected_statuses = self.cleaned_data["expected_statuses_text"]
        if self.cleaned_data.get("clear_token"):
            action.set_token("")
        if self.cleaned_data.get("bearer_token"):
            action.set_token(self.cleaned_data["bearer_token"])
        if commit:
            action.save()
        return action


def http_action_of(form: ParamsForm) -> HttpAction | None:
    if form.target.type != TARGET_TYPE or not form.target.id.isdigit():
        return None
    return HttpAction.objects.for_page().filter(pk=int(form.target.id)).first()


def _checker(spec: parameters.ParameterSpec) -> Any:
    def check(value: object) -> None:
        try:
            spec.check(value)
        except UnsafeValue as exc:
            raise forms.ValidationError(str(exc)) from None

    return check


class ActionParamsForm(ParamsForm):
    """One field per declared parameter, typed; the filled URL is checked as a whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action = http_action_of(self)
        for spec in self.action.parameter_specs if self.action else []:
            field: forms.Field
            if spec.type == ParameterType.INTEGER:
                field = forms.IntegerField(min_value=0, max_value=10**18 - 1)
            else:
                field = forms.CharField(max_length=parameters.MAX_VALUE_LENGTH, strip=True)
            field.label = spec.name
            field.help_text = f"{spec.describe().capitalize()}; encoded into the URL's path."
            field.validators.append(_checker(spec))
            self.fields[spec.name] = field

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.action is None:
            raise forms.ValidationError(f"{self.target.label} is no longer defined.")
        if self.errors:
            return cleaned
        try:
            self.action.url_for(cleaned)
        except UnsafeValue as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned
