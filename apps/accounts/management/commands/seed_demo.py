from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.roles import ADMIN, OPERATOR, VIEWER

# Demo logins: only for the embedded demo, refused when DEBUG is off.
DEMO_USERS = [
    ("admin", "admin-demo-pass", ADMIN, "Ada Admin"),
    ("approver", "approver-demo-pass", ADMIN, "Alan Approver"),
    ("operator", "operator-demo-pass", OPERATOR, "Olga Operator"),
    ("viewer", "viewer-demo-pass", VIEWER, "Victor Viewer"),
]


class Command(BaseCommand):
    help = "Create the demo users (one per role) and print their logins. DEBUG only."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("Demo users have known passwords: refused while DEBUG is off.")
        user_model = get_user_model()
        for username, password, role, full_name in DEMO_USERS:
            first, last = full_name.split(" ", 1)
            user, _ = user_model.objects.get_or_create(
                username=username,
                defaults={
                    "email": f"{username}@example.com",
                    "first_name": first,
                    "last_name": last,
                },
            )
            user.set_password(password)
            user.save(update_fields=["password"])
            user.groups.set([Group.objects.get(name=role)])
        self.stdout.write("Demo logins (user / password / role):")
        for username, password, role, _ in DEMO_USERS:
            self.stdout.write(f"  {username:<9} {password:<20} {role}")
