"""The maintenance tests use the services tests' world: the Kubernetes API emulator and a
catalog of one service in staging and production."""

from __future__ import annotations

from tests.services.conftest import catalog, kube  # noqa: F401  (fixtures)
