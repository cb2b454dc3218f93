from __future__ import annotations

import uuid
from typing import Any, cast

from django import forms

from apps.operations.actions import MAX_REASON_LENGTH
from apps.operations.choices import State
from apps.operations.registry import OperationKind, Target, all_kinds

PARAMS_PREFIX = "p"


class RequestForm(forms.Form):
    """What every operation request carries besides its own parameters."""

    reason = forms.CharField(
        label="Reason",
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=MAX_REASON_LENGTH,
        required=False,
        help_text="Why you are doing this: a ticket, an incident, a sentence.",
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)
    override_gate = forms.BooleanField(
        label="Override the deploy gate",
        required=False,
        help_text="Admins only: go ahead despite the blockers above. The reason is required "
        "and the override is audited.",
    )

    def __init__(
        self,
        *args: Any,
        kind: OperationKind,
        target: Target,
        gate_closed: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("initial", {}).setdefault("idempotency_key", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)
        if not gate_closed:
            del self.fields["override_gate"]
        if target.is_production or kind.destructive or gate_closed:
            self.fields["reason"].required = True
            self.fields["reason"].help_text = "Required here: " + str(
                self.fields["reason"].help_text
            )


def params_form(
    kind: OperationKind, target: Target, data: Any = None, initial: Any = None
) -> forms.Form:
    return kind.form_class(data=data, initial=initial, prefix=PARAMS_PREFIX, target=target)


def initial_params(query: Any) -> dict[str, str]:
    """Parameters given in the URL (``?p-to_revision=41``), for links that prefill a form."""
    prefix = f"{PARAMS_PREFIX}-"
    return {name[len(prefix) :]: query[name] for name in query if name.startswith(prefix)}


class CommentForm(forms.Form):
    comment = forms.CharField(
        label="Comment", widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000
    )


class OperationFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False)
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *State.choices])
    mine = forms.BooleanField(required=False, label="Only mine")
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind_field = cast(forms.ChoiceField, self.fields["kind"])
        kind_field.choices = [("", "Any kind")] + [(kind.name, kind.label) for kind in all_kinds()]
