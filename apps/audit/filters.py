"""The filters of the audit history, shared by the list page and the exports: one form that
reads them from the URL, the messages for the values it had to ignore, and the queryset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, EmptyResultSet
from django.db import connection
from django.db.models import F, Lookup, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.models import AuditEvent, AuditEventQuerySet
from apps.operations.models import Operation
from apps.operations.registry import all_kinds
from apps.services.models import TARGET_TYPE, DeploymentTarget, Environment, Service

# Largest value a PostgreSQL bigint holds: a bigger cursor or operation id would make the
# database raise instead of matching nothing.
MAX_BIGINT = 2**63 - 1
REVERSED_RANGE = "The start date is after the end date"

# The URL parameters, in the order a summary names them. The services pages link to
# ?target_type=…&target_id=…, ?q=… and ?operation=…: these names are part of the URL contract.
FILTERS = (
    "actor",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "service",
    "environment",
    "operation",
    "kind",
    "since",
    "until",
    "q",
)
CURSOR = "before"
PARAMETERS = (*FILTERS, CURSOR)


class AuditFilterForm(forms.Form):
    """The filters of the audit history as the URL carries them; every field is optional."""

    q = forms.CharField(required=False, label="Search target or reason", max_length=200)
    actor = forms.CharField(required=False, label="Actor", max_length=150)
    action = forms.CharField(required=False, label="Action starts with", max_length=100)
    outcome = forms.ChoiceField(
        required=False, label="Outcome", choices=[("", "Any outcome"), *Outcome.choices]
    )
    operation = forms.IntegerField(
        required=False, label="Operation", min_value=1, max_value=MAX_BIGINT
    )
    kind = forms.ChoiceField(required=False, label="Operation kind")
    target_type = forms.CharField(
        required=False, label="Object type", max_length=100, widget=forms.HiddenInput
    )
    target_id = forms.CharField(
        required=False, label="Object", max_length=64, widget=forms.HiddenInput
    )
    service = forms.ChoiceField(required=False, label="Service")
    environment = forms.ChoiceField(required=False, label="Environment")
    since = forms.DateField(
        required=False,
        label="From",
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    until = forms.DateField(
        required=False,
        label="To",
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    before = forms.IntegerField(
        required=False,
        label="Page cursor",
        min_value=1,
        max_value=MAX_BIGINT,
        widget=forms.HiddenInput,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The kinds registered now: an app's kinds appear here as soon as it registers them.
        kind_field: Any = self.fields["kind"]
        kind_field.choices = [("", "Any kind")] + [(kind.name, kind.label) for kind in all_kinds()]
        service_field: Any = self.fields["service"]
        service_field.choices = [("", "Any service")] + list(
            Service.objects.order_by("name").values_list("slug", "name")
        )
        environment_field: Any = self.fields["environment"]
        environment_field.choices = [("", "Any environment")] + list(
            Environment.objects.order_by("name").values_list("slug", "name")
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            raise forms.ValidationError(REVERSED_RANGE, code="reversed_range")
        return cleaned


@dataclass(frozen=True)
class Problem:
    """A filter that could not be applied, said in words for the page and the export."""

    name: str
    label: str
    value: str
    why: str

    def __str__(self) -> str:
        value = self.value if len(self.value) <= 60 else self.value[:59] + "…"
        shown = f' "{value}"' if value else ""
        return f"{self.label}{shown} ignored: {self.why}"


@dataclass(frozen=True)
class AuditFilter:
    """What the URL asked for: the values that can be applied, the ones that were ignored and
    why, and whether the request cannot match anything (a reversed date range)."""

    form: AuditFilterForm
    cleaned: dict[str, Any]
    problems: list[Problem]
    contradiction: str

    @property
    def active(self) -> bool:
        return bool(self.contradiction) or any(
            self.cleaned.get(name) not in (None, "") for name in FILTERS
        )

    def events(self, page_size: int | None = None) -> QuerySet[AuditEvent]:
        """The matching events; ``page_size`` when only the newest of them, below the
        cursor, will be read (a page), which lets the service and environment filters
        look up just that many per object."""
        if self.contradiction:
            return AuditEvent.objects.none()
        return filtered_events(self.cleaned, page_size)

    def query_string(self) -> str:
        """The applied filters as a query string, without the page cursor: what an export
        or a "show all" link carries."""
        query = QueryDict(mutable=True)
        for name in FILTERS:
            value = self.cleaned.get(name)
            if value not in (None, ""):
                query[name] = value.isoformat() if isinstance(value, date) else str(value)
        return query.urlencode()

    def summary(self) -> str:
        return describe(self.cleaned) if not self.contradiction else self.contradiction


def read_filters(params: QueryDict) -> AuditFilter:
    """Read the filters from ``params``: an invalid value drops that filter alone, never the
    others, and each drop becomes a Problem the page shows."""
    form = AuditFilterForm(params)
    form.is_valid()
    problems: list[Problem] = []
    for name, errors in form.errors.items():
        if name == NON_FIELD_ERRORS:
            continue
        field = form.fields[name]
        why = " ".join(str(error) for error in errors)
        problems.append(Problem(name, str(field.label or name), params.get(name, ""), why))
    contradiction = ""
    if REVERSED_RANGE in form.non_field_errors():
        contradiction = REVERSED_RANGE
    for name in params:
        if name not in PARAMETERS:
            problems.append(Problem(name, name, params.get(name, ""), "not a filter of this page"))
    cleaned = {
        name: value
        for name, value in getattr(form, "cleaned_data", {}).items()
        if name not in form.errors
    }
    return AuditFilter(form, cleaned, problems, contradiction)


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in the portal's time zone."""
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


# Events are numbered in the order they are written and stamped as they are written, so
# times grow with seq, up to the clocks of the portal's machines disagreeing by less than half
# this margin. An event stamped a margin before a date was written before every event stamped
# on it, and one stamped a margin after, after them: their seqs bound the dates' events. Those
# bounds (one index lookup each) let a page of an old week walk only that stretch of the table
# instead of every newer row.
CLOCK_SKEW_MARGIN = timedelta(hours=1)


def _seq_floor(start: datetime) -> int:
    """A seq below every event stamped at or after ``start``."""
    if start - datetime.min.replace(tzinfo=start.tzinfo) < CLOCK_SKEW_MARGIN:
        return 0  # the first day of the calendar
    before = (
        AuditEvent.objects.filter(created_at__lt=start - CLOCK_SKEW_MARGIN)
        .order_by("-created_at")
        .values_list("seq", flat=True)
        .first()
    )
    return before or 0


def _seq_ceiling(end: datetime) -> int:
    """A seq above every event stamped before ``end``."""
    if datetime.max.replace(tzinfo=end.tzinfo) - end < CLOCK_SKEW_MARGIN:
        return MAX_BIGINT  # the last day of the calendar
    after = (
        AuditEvent.objects.filter(created_at__gte=end + CLOCK_SKEW_MARGIN)
        .order_by("created_at")
        .values_list("seq", flat=True)
        .first()
    )
    return after if after is not None else MAX_BIGINT


class AnyOf(Lookup):  # type: ignore[type-arg]
    """``operation_id__any_of=[ids]``: on PostgreSQL ``= ANY(%s)`` with the ids as one array
    parameter, one value to bind and plan where IN has one per id (for 10,000 ids: 21 ms against
    40 ms, 8 of them planning); elsewhere IN."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, params = self.process_lhs(compiler, connection)
        ids = [int(value) for value in self.rhs]
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s::bigint[])", (*params, ids)
        if not ids:
            raise EmptyResultSet
        return f"{lhs} IN ({', '.join(['%s'] * len(ids))})", (*params, *ids)


AuditEvent._meta.get_field("operation_id").register_lookup(AnyOf)

# Up to this many operations of a kind, their ids go into the query as a list (and a page reads
# their events through the (operation_id, seq) index: see _newest_of_operations); beyond it, a
# subquery, and a page walks the seq index.
KIND_IDS_INLINE = 10_000


def _operations_of_kind(kind: str) -> list[int] | None:
    """The ids of the operations of ``kind``, or None when there are too many to list."""
    operations = Operation.objects.filter(kind=kind).order_by()
    ids = list(operations.values_list("pk", flat=True)[: KIND_IDS_INLINE + 1])
    return ids if len(ids) <= KIND_IDS_INLINE else None


def _of_kind(events: AuditEventQuerySet, kind: str, ids: list[int] | None) -> AuditEventQuerySet:
    """The events of the operations of ``kind``: requested, approved, finished, refused."""
    if ids is not None:
        return events.filter(operation_id__any_of=ids)
    return events.filter(operation_id__in=Operation.objects.filter(kind=kind).values("pk"))


def _newest_of_operations(
    events: AuditEventQuerySet, cursor: int | None, size: int
) -> AuditEventQuerySet:
    """The newest ``size`` events (below ``cursor``) of a listed set of operations, for a page.

    In newest-first order PostgreSQL walks the seq index backwards and tests each row against
    the list: fast when the operations' events are common, a walk of most of the table when
    they are rare or old (a kind with one event in a thousand: p95 102 ms for its first page at
    1,000,000 events). Ordered by ``seq + 0`` instead, which no index serves, it reads the
    events of the listed operations (at most KIND_IDS_INLINE) from the (operation_id, seq)
    index and keeps the newest: a cost that grows with the kind, never with the table. The
    seqs found make the page's query, which need not repeat the list."""
    below = events.filter(seq__lt=cursor) if cursor else events
    newest = list(
        below.annotate(seq_unindexed=F("seq") + 0)
        .order_by("-seq_unindexed")
        .values_list("seq", flat=True)[:size]
    )
    return AuditEvent.objects.newest_first().filter(seq__in=newest)


# The objects an event can be about that belong to a service or an environment, by the
# target_type their events carry. An operation's events carry its target (services.target,
# backups.target, …), so they are found through it. Database and Redis targets name a service
# but no environment.
ObjectIds = dict[str, set[str]]


def _objects_of_service(slug: str) -> ObjectIds:
    from apps.backups.models import TARGET_TYPE as DATABASE_TYPE
    from apps.backups.models import DatabaseTarget
    from apps.datastores.models import REDIS_TARGET_TYPE, RedisTarget

    service = Service.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if service is None:
        return {}

    def ids(model: Any) -> set[str]:
        return {
            str(pk) for pk in model.objects.filter(service_id=service).values_list("pk", flat=True)
        }

    return {
        "services.service": {str(service)},
        TARGET_TYPE: ids(DeploymentTarget),
        DATABASE_TYPE: ids(DatabaseTarget),
        REDIS_TARGET_TYPE: ids(RedisTarget),
    }


def _objects_of_environment(slug: str) -> ObjectIds:
    environment = Environment.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if environment is None:
        return {}
    targets = DeploymentTarget.objects.filter(environment_id=environment).values_list(
        "pk", flat=True
    )
    return {
        "services.environment": {str(environment)},
        TARGET_TYPE: {str(pk) for pk in targets},
    }


def _about(events: AuditEventQuerySet, objects: ObjectIds) -> AuditEventQuerySet:
    """The events whose target is one of ``objects``, in one condition: for an export, which
    reads every match anyway."""
    condition = Q()
    for target_type, ids in sorted(objects.items()):
        if ids:
            condition |= Q(target_type=target_type, target_id__in=sorted(ids))
    return events.filter(condition) if condition else events.none()


# Up to this many objects, a page looks each one up on its own (see _newest_about); beyond
# it (an environment of hundreds of services), one condition, which such a common filter
# matches densely enough for PostgreSQL's walk down the seq index to stop early.
OBJECTS_LOOKED_UP_ONE_BY_ONE = 200
_TYPE_SLOT = "\x00target_type"
_ID_SLOT = "\x00target_id"


def _newest_about(
    events: AuditEventQuerySet, objects: ObjectIds, cursor: int | None, size: int
) -> AuditEventQuerySet:
    """The newest ``size`` events (below ``cursor``) about ``objects``, for a page.

    One condition over all the objects lets PostgreSQL walk the seq index backwards and test
    each row: fast when they are common, a walk of the whole table when they are rare (a
    service with few events: 1.3 s at 1,000,000 events). Instead, each object's newest
    ``size`` events come from the (target_type, target_id, seq) index, one branch of a UNION
    ALL each, and the newest ``size`` of those make the page: the cost grows with the number
    of objects and the page, never with the table. The seqs are read first and put in the
    page's query as a list, so that the planner cannot turn back to the walk."""
    pairs = [(kind, pk) for kind, ids in sorted(objects.items()) for pk in sorted(ids)]
    if not pairs:
        return events.none()
    if (
        len(pairs) > OBJECTS_LOOKED_UP_ONE_BY_ONE
        or not connection.features.supports_slicing_ordering_in_compound
    ):
        return _about(events, objects)
    below = events.filter(seq__lt=cursor) if cursor else events
    # One branch compiled once, its object named by two placeholder values that each branch
    # replaces with its own: compiling hundreds of querysets would cost more than running them.
    branch = (
        below.filter(target_type=_TYPE_SLOT, target_id=_ID_SLOT)
        .order_by("-seq")
        .values_list("seq", flat=True)[:size]
    )
    try:
        sql, slots = branch.query.sql_with_params()
    except EmptyResultSet:  # another filter matches nothing (a kind with no operation)
        return events.none()
    params: list[Any] = []
    for kind, pk in pairs:
        params += [kind if p == _TYPE_SLOT else pk if p == _ID_SLOT else p for p in slots]
    # Ordered and cut again outside: PostgreSQL merges the branches (Merge Append), reading
    # from each only as far as the page needs, not a page from every one.
    union = " UNION ALL ".join([f"({sql})"] * len(pairs))
    with connection.cursor() as database:
        database.execute(
            f"SELECT * FROM ({union}) AS about ORDER BY 1 DESC LIMIT {int(size)}", params
        )
        newest = [row[0] for row in database.fetchall()]
    return events.filter(seq__in=newest)


def objects_about(cleaned: dict[str, Any]) -> ObjectIds | None:
    """The objects the service and environment filters leave (both: the targets of that
    service in that environment), or None when neither filter is set."""
    service, environment = cleaned.get("service"), cleaned.get("environment")
    if not service and not environment:
        return None
    found = _objects_of_service(service) if service else None
    if environment:
        of_environment = _objects_of_environment(environment)
        found = (
            of_environment
            if found is None
            else {
                target_type: ids & of_environment[target_type]
                for target_type, ids in found.items()
                if target_type in of_environment
            }
        )
    return found or {}


def filtered_events(cleaned: dict[str, Any], page_size: int | None = None) -> QuerySet[AuditEvent]:
    """Events matching the cleaned filters, newest first. Each filter maps to one condition that
    an index of the table serves; see migration 0003. With ``page_size``, only the newest that
    many below the cursor are sure to be there (the service and environment filters look
    each of their objects up on its own; see _newest_about)."""
    events = AuditEvent.objects.newest_first()
    if actor := cleaned.get("actor"):
        events = events.filter(actor_label=actor)
    if action := cleaned.get("action"):
        events = events.filter(action__startswith=action)
    if outcome := cleaned.get("outcome"):
        events = events.filter(outcome=outcome)
    if target_type := cleaned.get("target_type"):
        events = events.filter(target_type=target_type)
    if target_id := cleaned.get("target_id"):
        events = events.filter(target_id=target_id)
    if operation := cleaned.get("operation"):
        events = events.filter(operation_id=operation)
    kind_ids = None
    if kind := cleaned.get("kind"):
        kind_ids = _operations_of_kind(kind)
        events = _of_kind(events, kind, kind_ids)
    since, until = cleaned.get("since"), cleaned.get("until")
    if since and until and since > until:
        return events.none()
    if since:
        start = day_start(since)
        events = events.filter(created_at__gte=start, seq__gt=_seq_floor(start))
    # The end date is inclusive: everything before the next midnight. The last day the
    # calendar has has no next midnight, and needs no bound.
    if until and until < date.max:
        end = day_start(until + timedelta(days=1))
        events = events.filter(created_at__lt=end, seq__lt=_seq_ceiling(end))
    if text := cleaned.get("q"):
        events = events.filter(Q(target_label__icontains=text) | Q(reason__icontains=text))
    # Last: a page's lookup per object or operation carries every other filter.
    if (objects := objects_about(cleaned)) is not None:
        if page_size is None:
            events = _about(events, objects)
        else:
            events = _newest_about(events, objects, cleaned.get(CURSOR), page_size)
    elif kind_ids is not None and page_size is not None:
        events = _newest_of_operations(events, cleaned.get(CURSOR), page_size)
    return events


def describe(cleaned: dict[str, Any]) -> str:
    """The filters in words, for the header of an export: "outcome is denied; actor is bob"."""
    parts = []
    if actor := cleaned.get("actor"):
        parts.append(f"actor is {actor}")
    if action := cleaned.get("action"):
        parts.append(f"action starts with {action}")
    if outcome := cleaned.get("outcome"):
        parts.append(f"outcome is {outcome}")
    if target_type := cleaned.get("target_type"):
        parts.append(f"object type is {target_type}")
    if target_id := cleaned.get("target_id"):
        parts.append(f"object id is {target_id}")
    if service := cleaned.get("service"):
        parts.append(f"service is {service}")
    if environment := cleaned.get("environment"):
        parts.append(f"environment is {environment}")
    if operation := cleaned.get("operation"):
        parts.append(f"operation is #{operation}")
    if kind := cleaned.get("kind"):
        parts.append(f"operation kind is {kind}")
    zone = timezone.get_default_timezone_name()
    if since := cleaned.get("since"):
        parts.append(f"on or after {since.isoformat()} ({zone})")
    if until := cleaned.get("until"):
        parts.append(f"on or before {until.isoformat()} ({zone})")
    if text := cleaned.get("q"):
        parts.append(f'target or reason contains "{text}"')
    return "; ".join(parts) if parts else "all events"
