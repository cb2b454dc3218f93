"""Celery tasks: thin entry points; the work is in the runner and the reaper."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.signals import task_failure, worker_ready

from apps.operations import reaper, runner
from apps.operations.choices import State
from apps.operations.models import Operation


@shared_task(bind=True, name="apps.operations.tasks.run_operation", ignore_result=True)
def run_operation(self: Task, operation_id: int) -> None:
    runner.execute(
        int(operation_id),
        worker=self.request.hostname or "unknown worker",
        task_id=self.request.id or "",
    )


@shared_task(name="apps.operations.tasks.reap_operations", ignore_result=True)
def reap_operations() -> dict[str, int]:
    return reaper.reap()


@worker_ready.connect
def fail_what_this_worker_ran_before(sender: Any, **kwargs: Any) -> None:
    reaper.fail_operations_of_restarted_worker(sender.hostname)


@task_failure.connect(sender=run_operation)
def fail_on_hard_time_limit(sender: Any, task_id: str, exception: BaseException, **kw: Any) -> None:
    """The hard time limit kills the child process: the runner cannot record it itself."""
    operation = Operation.objects.filter(celery_task_id=task_id, state=State.RUNNING).first()
    if operation is not None:
        runner.finish(
            operation, State.FAILED, f"Stopped: {type(exception).__name__}", str(exception)
        )
