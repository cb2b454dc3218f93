"""Post-mortems: the draft generated from the timeline, saving and completing it, its
action items, and the Markdown export. Each ``do_*`` is one transaction and one audit
record; a refusal says why and saves nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from apps.audit.records import record
from apps.incidents.actions import IncidentRefused, add_entry, audit_target, refuse
from apps.incidents.choices import EntryKind, IncidentState, Role, Visibility
from apps.incidents.models import ActionItem, Incident, PostMortem, TimelineEntry

# The fields a person writes, in the order of the page and of the export.
SECTIONS: list[tuple[str, str]] = [
    ("summary", "Summary"),
    ("impact", "Impact"),
    ("root_cause", "Root cause"),
    ("contributing_factors", "Contributing factors"),
    ("went_well", "What went well"),
    ("went_badly", "What went badly"),
]
TEXT_FIELDS = [name for name, _ in SECTIONS] + ["timeline"]
# What "Mark complete" asks for, besides at least one action item.
REQUIRED_TO_COMPLETE = [
    ("summary", "a summary"),
    ("impact", "the impact"),
    ("root_cause", "the root cause"),
]
WRITABLE_STATES = (IncidentState.RESOLVED, IncidentState.CLOSED)
# Logged this much after it happened: the excerpt says when it was written too.
LOGGED_LATE = timedelta(minutes=2)


def utc(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return value.astimezone(UTC).strftime(fmt) if value else "—"


def duration_words(value: timedelta | None) -> str:
    """A duration as people say it: "45 s", "4 min", "1 h 12 min", "2 d 3 h"."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


# --- The timeline excerpt -----------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _names(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value) if value not in (None, "") else "none"


def _what_happened(entry: TimelineEntry) -> str:
    """The entry in words, on one line: the same facts the incident page shows."""
    data: Mapping[str, Any] = entry.data if isinstance(entry.data, dict) else {}
    text = _one_line(entry.text)
    kind = entry.kind
    if kind == EntryKind.DECLARED:
        words = f"Declared {data.get('severity', '')}".rstrip()
        if data.get("services"):
            words += f" on {_names(data['services'])}"
        if data.get("commander"):
            words += f", commander {data['commander']}"
        return f"{words}. {text}" if text else words
    if kind == EntryKind.UPDATE:
        visibility = "Public" if entry.visibility == Visibility.PUBLIC else "Internal"
        parts = [f"{visibility} update: {_one_line(entry.current_status)}"]
        if entry.findings:
            parts.append(f"Findings: {_one_line(entry.findings)}")
        if entry.next_steps:
            parts.append(f"Next steps: {_one_line(entry.next_steps)}")
        if entry.eta:
            parts.append(f"ETA: {_one_line(entry.eta)}")
        return " — ".join(parts)
    if kind in (EntryKind.STATE, EntryKind.SEVERITY):
        label = "State" if kind == EntryKind.STATE else "Severity"
        words = f"{label}: {data.get('from', '?')} → {data.get('to', '?')}"
        if data.get("reopened"):
            words += " (reopened)"
        return f"{words}. Reason: {text}" if text else words
    if kind == EntryKind.ROLE:
        try:
            role = Role(data.get("role", "")).label
        except ValueError:
            role = str(data.get("role", "Role"))
        return f"{role}: {data.get('from') or 'nobody'} → {data.get('to') or 'nobody'}"
    if kind == EntryKind.SERVICES:
        services = data.get("services", {})
        if isinstance(services, dict):
            return (
                f"Affected services: {_names(services.get('from'))} → {_names(services.get('to'))}"
            )
    if kind == EntryKind.OPERATION:
        phase = "started" if data.get("phase") == "requested" else "finished"
        words = f"Operation {data.get('kind', '')} on {data.get('target', '')} {phase}"
        if data.get("phase") != "requested" and data.get("state"):
            words += f": {data['state']}"
        return f"{words}. {text}" if text else words
    label = EntryKind(kind).label if kind in EntryKind.values else str(kind)
    return f"{label}: {text}" if text else label


def excerpt_line(entry: TimelineEntry) -> str:
    """One entry as one plain-text line: time (UTC), author, what happened."""
    author = entry.author.get_username() if entry.author else "portal"
    line = f"{utc(entry.occurred_at)} · {author} · {_what_happened(entry)}"
    if entry.corrects_id is not None:
        corrected = entry.corrects
        line += f" (corrects the entry of {utc(corrected.occurred_at) if corrected else '?'})"
    if entry.created_at - entry.occurred_at > LOGGED_LATE:
        line += f" (logged {utc(entry.created_at)})"
    return line


def timeline_excerpt(incident: Incident) -> str:
    """The draft excerpt: every entry, public and internal, in the order things happened."""
    entries = (
        TimelineEntry.objects.filter(incident=incident)
        .select_related("author", "corrects")
        .order_by("occurred_at", "id")
    )
    return "\n".join(excerpt_line(entry) for entry in entries)


# --- Actions ------------------------------------------------------------------------------


def check_writable(incident: Incident) -> None:
    if incident.state not in WRITABLE_STATES:
        raise IncidentRefused(
            f"Incident #{incident.pk} is {incident.get_state_display().lower()}: a post-mortem "
            "is written once it is resolved."
        )


def _locked_postmortem(actor: User, incident: Incident) -> tuple[PostMortem, bool]:
    """The incident's post-mortem, locked, or a new unsaved draft (inside a transaction)."""
    found = PostMortem.objects.select_for_update().filter(incident=incident).first()
    if found is not None:
        return found, False
    return PostMortem(incident=incident, author=actor, timeline=timeline_excerpt(incident)), True


def _locked_incident(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().select_related("severity").get(pk=incident.pk)


def _missing_to_complete(postmortem: PostMortem, has_actions: bool) -> list[str]:
    missing = [
        words for name, words in REQUIRED_TO_COMPLETE if not getattr(postmortem, name).strip()
    ]
    if not has_actions:
        missing.append("at least one action item")
    return missing


def _missing_message(missing: list[str]) -> str:
    listed = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + f" and {missing[-1]}"
    return f"The post-mortem cannot be completed yet: add {listed}. Nothing was saved."


def _apply(postmortem: PostMortem, fields: Mapping[str, str]) -> list[str]:
    changed = []
    for name in TEXT_FIELDS:
        if name in fields:
            value = str(fields[name]).strip()
            if getattr(postmortem, name) != value:
                setattr(postmortem, name, value)
                changed.append(name)
    return changed


def do_save_postmortem(actor: User, incident: Incident, fields: Mapping[str, str]) -> PostMortem:
    """Write the post-mortem's sections (the first save creates the draft, its timeline
    excerpt generated from the entries unless one is given). A completed post-mortem may
    be corrected, but not emptied of what completing it required."""
    with transaction.atomic():
        incident = _locked_incident(incident)
        check_writable(incident)
        postmortem, new = _locked_postmortem(actor, incident)
        if new and not str(fields.get("timeline", "")).strip():
            # A first save without an excerpt keeps the one generated from the entries.
            fields = {name: value for name, value in fields.items() if name != "timeline"}
        changed = _apply(postmortem, fields)
        if postmortem.is_complete:
            missing = _missing_to_complete(postmortem, has_actions=True)
            if missing:
                raise IncidentRefused(
                    f"This post-mortem is complete: it keeps {' and '.join(missing)}. "
                    "Nothing was saved."
                )
        if not new and not changed:
            return postmortem
        postmortem.updated_at = timezone.now()
        if new:
            postmortem.created_at = postmortem.updated_at
            postmortem.save(force_insert=True)
        else:
            postmortem.save(update_fields=[*changed, "updated_at"])
        record_change(
            "incident.postmortem_saved", actor, incident, {"fields": changed, "created": new}
        )
    return postmortem


def do_complete_postmortem(
    actor: User, incident: Incident, fields: Mapping[str, str] | None = None
) -> PostMortem:
    """Mark the post-mortem complete, saving ``fields`` with it when given: it needs a
    summary, the impact, the root cause and at least one action item, else nothing is
    saved. Completing writes a timeline entry; the incident may then be closed."""
    refusal = ""
    with transaction.atomic():
        incident = _locked_incident(incident)
        check_writable(incident)
        postmortem, new = _locked_postmortem(actor, incident)
        if postmortem.is_complete and not fields:
            return postmortem
        changed = _apply(postmortem, fields or {})
        has_actions = not new and postmortem.actions.exists()
        missing = _missing_to_complete(postmortem, has_actions)
        if missing:
            refusal = _missing_message(missing)
        else:
            now = timezone.now()
            first_time = not postmortem.is_complete
            postmortem.updated_at = now
            postmortem.completed_at = postmortem.completed_at or now
            postmortem.save(update_fields=[*changed, "updated_at", "completed_at"])
            if first_time:
                late = incident.postmortem_due is not None and now > incident.postmortem_due
                add_entry(
                    incident,
                    EntryKind.POSTMORTEM,
                    actor,
                    text="Post-mortem completed" + (" (after its due time)." if late else "."),
                    data={"actions": postmortem.actions.count(), "late": late},
                )
            record_change(
                "incident.postmortem_completed" if first_time else "incident.postmortem_saved",
                actor,
                incident,
                {"fields": changed},
            )
    if refusal:
        # Audited after the rollback of the attempt, so that the refusal itself is kept.
        raise refuse(actor, incident, "postmortem_complete_refused", refusal)
    return postmortem


def do_add_action_item(
    actor: User, incident: Incident, *, title: str, owner: User, due_date: date
) -> ActionItem:
    """A follow-up with an owner and a due date (the first one creates the draft)."""
    title = _one_line(title)
    if not title:
        raise IncidentRefused("Say what has to be done.")
    if due_date < timezone.localdate():
        raise IncidentRefused("The due date is in the past: give today or a later date.")
    with transaction.atomic():
        incident = _locked_incident(incident)
        check_writable(incident)
        postmortem, new = _locked_postmortem(actor, incident)
        if new:
            postmortem.save(force_insert=True)
        item = ActionItem(
            postmortem=postmortem,
            title=title,
            owner=owner,
            due_date=due_date,
            created_at=timezone.now(),
        )
        item.save(force_insert=True)
        record_change(
            "incident.action_item_added",
            actor,
            incident,
            {"item": item.pk, "owner": owner.get_username(), "due_date": due_date.isoformat()},
        )
    return item


def do_complete_action_item(actor: User, item: ActionItem) -> ActionItem:
    """An action item is done. Doing it twice changes nothing."""
    with transaction.atomic():
        item = (
            ActionItem.objects.select_for_update(of=("self",))
            .select_related("postmortem__incident")
            .get(pk=item.pk)
        )
        if item.done_at is not None:
            return item
        item.done_at = timezone.now()
        item.save(update_fields=["done_at"])
        record_change(
            "incident.action_item_done",
            actor,
            item.postmortem.incident,
            {"item": item.pk, "title": item.title},
        )
    return item


def record_change(action: str, actor: User, incident: Incident, data: dict[str, Any]) -> None:
    record(action, actor=actor, target=audit_target(incident), data=data)


# --- The Markdown export ------------------------------------------------------------------


def md_text(value: object) -> str:
    """What a person typed, made inert for Markdown renderers: HTML special characters
    become entities (``<script>`` stays text) and brackets cannot form links."""
    return (
        str(value)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("[", "&#91;")
        .replace("]", "&#93;")
    )


def md_cell(value: object) -> str:
    """``md_text`` for a table cell: on one line, and a ``|`` does not end the cell."""
    return _one_line(md_text(value)).replace("|", "\\|") or " "


def _md_block(value: str) -> list[str]:
    text = value.strip()
    return [md_text(text) if text else "_Not written._", ""]


@dataclass(frozen=True)
class MarkdownExport:
    filename: str
    content: str


def postmortem_markdown(postmortem: PostMortem) -> str:
    """The post-mortem as a Markdown document: the facts, the sections, the timeline
    excerpt and the action items. Every typed value goes through ``md_text``/``md_cell``."""
    incident = postmortem.incident
    services = ", ".join(service.name for service in incident.services.all()) or "none recorded"
    status = f"Completed {utc(postmortem.completed_at)}" if postmortem.is_complete else "Draft"
    lines = [
        f"# Post-mortem: incident #{incident.pk} — {md_text(incident.title)}",
        "",
        f"- **Status:** {status}",
        f"- **Severity:** {md_text(incident.severity)}",
        f"- **State:** {incident.get_state_display()}",
        f"- **Services:** {md_text(services)}",
        f"- **Declared:** {utc(incident.declared_at)} by {md_text(incident.declared_by)}",
        f"- **Commander:** {md_text(incident.commander)}",
        f"- **Acknowledged:** {utc(incident.acknowledged_at)}",
        f"- **Resolved:** {utc(incident.resolved_at)}",
        f"- **Closed:** {utc(incident.closed_at)}",
        f"- **Time to acknowledge:** {duration_words(incident.time_to_acknowledge)}",
        f"- **Time to resolve:** {duration_words(incident.time_to_resolve)}",
        f"- **Post-mortem due:** {utc(incident.postmortem_due)}",
        f"- **Written by:** {md_text(postmortem.author)}, last saved {utc(postmortem.updated_at)}",
        "",
    ]
    if incident.customer_impact:
        lines += ["## Customer impact (as declared)", "", *_md_block(incident.customer_impact)]
    for name, label in SECTIONS[:2]:
        lines += [f"## {label}", "", *_md_block(getattr(postmortem, name))]
    lines += ["## Timeline (UTC)", ""]
    excerpt = [line.strip() for line in postmortem.timeline.splitlines() if line.strip()]
    lines += [f"- {md_text(line)}" for line in excerpt] or ["_No timeline excerpt._"]
    lines.append("")
    for name, label in SECTIONS[2:]:
        lines += [f"## {label}", "", *_md_block(getattr(postmortem, name))]
    lines += ["## Action items", ""]
    items = list(postmortem.actions.all())
    if items:
        lines += ["| Action | Owner | Due | Status |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {md_cell(item.title)} | {md_cell(item.owner.get_username())} | "
            f"{item.due_date.isoformat()} | "
            f"{'Done ' + utc(item.done_at, '%Y-%m-%d') if item.done_at else 'Open'} |"
            for item in items
        ]
    else:
        lines.append("_No action items._")
    lines += ["", f"_Exported from OpsPortal {utc(timezone.now())}._", ""]
    return "\n".join(lines)


def postmortem_for_export(incident: Incident) -> PostMortem | None:
    return (
        PostMortem.objects.filter(incident=incident)
        .select_related(
            "author", "incident__severity", "incident__commander", "incident__declared_by"
        )
        .prefetch_related("incident__services", "actions__owner")
        .first()
    )


def do_export_postmortem(actor: User, incident: Incident) -> MarkdownExport:
    """The post-mortem as a Markdown file; the download is audited."""
    postmortem = postmortem_for_export(incident)
    if postmortem is None:
        raise IncidentRefused(f"Incident #{incident.pk} has no post-mortem to export yet.")
    content = postmortem_markdown(postmortem)
    record_change(
        "incident.postmortem_exported",
        actor,
        incident,
        {"complete": postmortem.is_complete, "bytes": len(content.encode())},
    )
    return MarkdownExport(f"incident-{incident.pk}-postmortem.md", content)
