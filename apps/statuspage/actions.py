"""Every change to the status page's components: one transaction and one audit record each."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.audit.records import AuditTarget, field_changes, record, save_form_recorded
from apps.statuspage.forms import ComponentForm
from apps.statuspage.models import COMPONENT_TYPE, StatusComponent

UP = "up"
DOWN = "down"


def audit_target(component: StatusComponent) -> AuditTarget:
    return AuditTarget(COMPONENT_TYPE, str(component.pk), component.name)


def do_save_component(actor: User, form: ComponentForm) -> StatusComponent:
    """Publish a service as a component (placed last on the page), or rename it or change
    its description."""
    component: StatusComponent = form.instance
    if component.pk is None:
        last = StatusComponent.objects.aggregate(last=Max("position"))["last"]
        component.position = 0 if last is None else last + 1
    component.updated_at = timezone.now()
    saved: StatusComponent = save_form_recorded(
        actor, form, target_of=audit_target, changes=field_changes(form)
    )
    return saved


def do_move_component(actor: User, component: StatusComponent, direction: str) -> bool:
    """Swap a component with its neighbour above (``up``) or below (``down``); the positions
    are renumbered 0, 1, 2, … on the way. False when it is already first (or last)."""
    if direction not in (UP, DOWN):
        raise ValueError(f"Unknown direction {direction!r}: up or down.")
    with transaction.atomic():
        ordered = list(StatusComponent.objects.select_for_update().order_by("position", "name"))
        index = next(i for i, each in enumerate(ordered) if each.pk == component.pk)
        other = index - 1 if direction == UP else index + 1
        if not 0 <= other < len(ordered):
            return False
        ordered[index], ordered[other] = ordered[other], ordered[index]
        for position, each in enumerate(ordered):
            if each.position != position:
                each.position = position
                each.save(update_fields=["position"])
        record(
            "statuscomponent.moved",
            actor=actor,
            target=audit_target(component),
            data={"from": index + 1, "to": other + 1},
        )
    return True


def do_remove_component(actor: User, component: StatusComponent) -> None:
    """Take a component off the status page. The service, its incidents and their history
    stay; adding the service again brings its history back."""
    with transaction.atomic():
        target = audit_target(component)
        service_name = component.service.name
        component.delete()
        record(
            "statuscomponent.removed",
            actor=actor,
            target=target,
            data={"service": service_name},
        )
