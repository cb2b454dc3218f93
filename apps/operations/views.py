from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from apps.accounts.access import (
    mark_reauthenticated,
    reauthentication_is_fresh,
    require_permission,
)
from apps.accounts.forms import ReauthenticationForm
from apps.audit.records import record
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page
from apps.operations import actions, origins
from apps.operations.choices import State
from apps.operations.forms import (
    CommentForm,
    OperationFilterForm,
    RequestForm,
    initial_params,
    params_form,
)
from apps.operations.models import Operation, OperationLogLine
from apps.operations.registry import UnknownKind, get_kind


@require_permission("operations.view_operation")
@require_GET
def operation_list(request: PortalRequest) -> HttpResponse:
    """Newest first, filtered by the URL, paged by id (keyset) so every page is as fast."""
    form = OperationFilterForm(request.GET)
    operations = Operation.objects.for_list()
    if form.is_valid():
        filters = form.cleaned_data
        if filters["kind"]:
            operations = operations.filter(kind=filters["kind"])
        if filters["state"]:
            operations = operations.filter(state=filters["state"])
        if filters["mine"]:
            operations = operations.filter(requested_by=request.user)
    before = form.cleaned_data.get("before") if form.is_valid() else None
    page = keyset_page(request, operations, "pk", before)
    context = {
        "form": form,
        "operations": page.rows,
        "next_query": page.next_query,
        "filtered": any(request.GET.get(name) for name in ("kind", "state", "mine")),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "operations/list.html#results", context)
    return render(request, "operations/list.html", context)


def _decision_context(request: PortalRequest, operation: Operation) -> dict[str, Any]:
    user = request.user
    return {
        "can_cancel": operation.is_active
        and (
            operation.requested_by_id == user.pk
            or user.has_perm("operations.run_destructive_operation")
        ),
        "can_decide": operation.state in (State.AWAITING_APPROVAL, State.APPROVED)
        and user.has_perm("operations.approve_operation")
        and operation.requested_by_id != user.pk,
        "can_run": operation.state == State.APPROVED and user.has_perm("operations.run_operation"),
        "can_edit": operation.state in (State.AWAITING_APPROVAL, State.APPROVED)
        and operation.requested_by_id == user.pk,
    }


@require_permission("operations.view_operation")
@require_GET
def operation_detail(request: PortalRequest, pk: int) -> HttpResponse:
    operation = get_object_or_404(
        Operation.objects.select_related("requested_by", "approved_by"), pk=pk
    )
    after = request.GET.get("after", "")
    lines = OperationLogLine.objects.filter(operation=operation)
    if request.htmx and after.isdigit():
        if operation.is_final:
            # It ended: reload the whole page once, so that the facts and buttons match.
            return HttpResponseClientRefresh()
        # A poll: the status block and only the log lines after the cursor.
        new_lines = list(lines.filter(pk__gt=int(after)))
        cursor = new_lines[-1].pk if new_lines else int(after)
        context = {"operation": operation, "lines": new_lines, "cursor": cursor, "poll": True}
        return render(request, "operations/detail.html#live", context)
    all_lines = list(lines)
    try:
        target_url = actions.resolve(operation.kind, operation.target_id)[1].url
    except actions.OperationRefused:
        target_url = ""  # the target is gone: its label stays, without a link
    context = {
        "operation": operation,
        "target_url": target_url,
        "origin": origins.describe(operation.origin) if operation.origin else None,
        "lines": all_lines,
        "cursor": all_lines[-1].pk if all_lines else 0,
        **_decision_context(request, operation),
    }
    return render(request, "operations/detail.html", context)


def _shown(value: Any) -> Any:
    """A parameter as the confirmation shows it: yes/no rather than True/False, — for empty."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "—" if value in (None, "") else value


@require_permission("operations.run_operation")
@require_http_methods(["GET", "POST"])
def operation_start(request: PortalRequest, kind_name: str) -> HttpResponse:
    """Ask for an operation in two steps: the form, then a confirmation saying exactly what
    will happen (and asking for the password again before a destructive kind)."""
    target_id = request.POST.get("target") or request.GET.get("target") or ""
    try:
        kind, target = actions.resolve(kind_name, target_id)
    except actions.OperationRefused as exc:
        return render(request, "operations/unavailable.html", {"message": exc.message}, status=404)
    data = request.POST if request.method == "POST" else None
    origin_key = request.POST.get("origin") or request.GET.get("origin") or ""
    origin = origins.describe(origin_key) if origin_key else None
    if origin_key and origin is None:
        return render(
            request,
            "operations/unavailable.html",
            {"message": f"It cannot be started from {origin_key!r}: there is no such thing."},
            status=404,
        )
    blockers = kind.blockers(target, origin_key)
    may_override = bool(blockers) and request.user.has_perm("operations.override_gate")
    request_form = RequestForm(data, kind=kind, target=target, gate_closed=may_override)
    parameters = params_form(kind, target, data, initial=initial_params(request.GET))
    context: dict[str, Any] = {
        "kind": kind,
        "target": target,
        "request_form": request_form,
        "params_form": parameters,
        "blockers": blockers,
        "origin": origin,
    }
    if request.method == "GET":
        return render(request, "operations/start.html", context)
    if not (request_form.is_valid() and parameters.is_valid()):
        if not parameters.is_valid():
            errors = {
                name: [str(error) for error in messages]
                for name, messages in parameters.errors.items()
            }
            actions.do_record_invalid_request(request.user, kind, target, errors, request.POST)
        return render(request, "operations/start.html", context, status=400)
    cleaned = {name: parameters.cleaned_data[name] for name in parameters.fields}
    labelled = [(parameters[name].label, _shown(value)) for name, value in cleaned.items()]
    needs_password = kind.destructive and not reauthentication_is_fresh(request)
    reauth_form = ReauthenticationForm(request, data if "confirmed" in request.POST else None)
    context.update(
        {
            "params": labelled,
            "summary": kind.summary(target, cleaned),
            "command": kind.command(target, cleaned),
            "needs_approval": kind.needs_approval(target),
            "needs_password": needs_password,
            "reauth_form": reauth_form,
        }
    )
    if "confirmed" not in request.POST:
        return render(request, "operations/confirm.html", context)
    if needs_password:
        if not reauth_form.is_valid():
            return render(request, "operations/confirm.html", context, status=400)
        mark_reauthenticated(request)
        record("auth.reauthenticated", actor=request.user)
    try:
        operation = actions.do_start_operation(
            request.user,
            kind.name,
            target.id,
            cleaned,
            request_form.cleaned_data["reason"],
            idempotency_key=request_form.cleaned_data["idempotency_key"],
            override_gate=request_form.cleaned_data.get("override_gate", False),
            origin=origin_key,
        )
    except actions.OperationRefused as exc:
        context["refusal"] = exc
        status = 409 if exc.existing is not None else 400
        return render(request, "operations/start.html", context, status=status)
    if operation.state == State.AWAITING_APPROVAL:
        messages.info(request, f"Operation #{operation.pk} waits for another admin's approval.")
    else:
        messages.success(request, f"Operation #{operation.pk} is queued: {kind.label}.")
    return redirect(operation)


def _act(request: PortalRequest, pk: int, act: Any, done: str) -> HttpResponse:
    operation = get_object_or_404(Operation, pk=pk)
    try:
        act(operation)
    except actions.OperationRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done.format(pk=operation.pk))
    return redirect(reverse("operations:detail", args=[pk]))


@require_permission("operations.run_operation")
@require_POST
def operation_cancel(request: PortalRequest, pk: int) -> HttpResponse:
    reason = request.POST.get("reason", "")
    return _act(
        request,
        pk,
        lambda op: actions.do_cancel_operation(request.user, op, reason),
        "Cancel of operation #{pk} requested.",
    )


def _comment(request: PortalRequest) -> str:
    form = CommentForm(request.POST)
    return form.cleaned_data["comment"] if form.is_valid() else ""


@require_permission("operations.approve_operation")
@require_POST
def operation_approve(request: PortalRequest, pk: int) -> HttpResponse:
    comment = _comment(request)
    return _act(
        request,
        pk,
        lambda op: actions.do_approve_operation(request.user, op, comment),
        "Operation #{pk} approved: the requester can run it now.",
    )


@require_permission("operations.approve_operation")
@require_POST
def operation_reject(request: PortalRequest, pk: int) -> HttpResponse:
    comment = _comment(request)
    return _act(
        request,
        pk,
        lambda op: actions.do_reject_operation(request.user, op, comment),
        "Operation #{pk} rejected.",
    )


@require_permission("operations.run_operation")
@require_POST
def operation_run(request: PortalRequest, pk: int) -> HttpResponse:
    return _act(
        request,
        pk,
        lambda op: actions.do_run_approved_operation(request.user, op),
        "Operation #{pk} is queued.",
    )


@require_permission("operations.run_operation")
@require_http_methods(["GET", "POST"])
def operation_edit(request: PortalRequest, pk: int) -> HttpResponse:
    """Change the parameters of an operation that has not run yet (voids any approval)."""
    operation = get_object_or_404(Operation, pk=pk)
    try:
        kind = get_kind(operation.kind)
    except UnknownKind as exc:
        return render(request, "operations/unavailable.html", {"message": str(exc)}, status=404)
    if request.method == "POST":
        form = params_form(kind, operation.target, request.POST)
        if form.is_valid():
            try:
                cleaned = {name: form.cleaned_data[name] for name in form.fields}
                actions.do_change_operation_params(request.user, operation, cleaned)
            except actions.OperationRefused as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, "Parameters changed: the operation needs approval again.")
            return redirect(operation)
    else:
        form = params_form(kind, operation.target, initial=operation.params)
    return render(
        request, "operations/edit.html", {"operation": operation, "kind": kind, "params_form": form}
    )
