"""FER_EXECUTOR=celery: every step a Celery task that a worker on any machine runs, CPU steps on
the `dagster` queue and the GPU steps (GPU_STEP_TAGS) on `gpu`.

dagster-celery's executor waits forever for a step that no worker consumes, and for a step
whose worker died half-way (the task message is gone, no result will ever come). This one
turns both into a failed run with a message that says what to do:
- before submitting a step it asks the workers which queues they listen on;
- while a step runs it asks, every few seconds, whether the worker that started it (Celery's
  `task_track_started` says which) still answers a ping.
A step lost with its worker is not retried: the run fails, and the next run re-executes the
step (StarGAN resumes from its last checkpoint; every other step rewrites its table whole).
The lost step's concurrency-pool slot (the `gpu` pool) is freed at once: Dagster frees a slot
when the step's end event arrives, which a killed worker never sends, and a leaked slot would
hold every later run's StarGAN step forever.

Workers: `python -m fer_data.worker --queues dagster,gpu` (see fer_data/worker.py).
"""

from __future__ import annotations

import os
import time

from dagster import Field, Noneable, StringSource, executor, multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CeleryExecutor, _submit_task

QUEUES = ("dagster", "gpu")  # CPU steps, GPU steps (GPU_STEP_TAGS)
WORKER_CONFIG = {"task_track_started": True}  # a started task names its worker and pid


def celery_settings() -> dict[str, str]:
    """Broker and result backend from FER_CELERY_BROKER / FER_CELERY_BACKEND; by default Redis
    on localhost, database 0 for the broker and 1 for the results. The launching process and
    every worker must use the same two."""
    broker = os.environ.get("FER_CELERY_BROKER", "redis://localhost:6379/0")
    return {"broker": broker,
            "backend": os.environ.get("FER_CELERY_BACKEND", broker.rsplit("/", 1)[0] + "/1")}


def listening_queues(app, timeout: float = 2.0) -> set[str]:
    """The queues some live worker consumes."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {q["name"] for queues in replies.values() for q in queues}


class WatchedResult:
    """A step's Celery result that also becomes ready, with an error, when the worker running
    the step stops answering (or, while it waits, when no worker is left on its queue)."""

    def __init__(self, result, app, step_key: str, queue: str, on_lost=None,
                 every: float = 5.0):
        self.result, self.app, self.step_key, self.queue = result, app, step_key, queue
        self.on_lost = on_lost or (lambda: None)
        self.every, self.checked, self.lost = every, time.monotonic(), None

    def ready(self) -> bool:
        if self.result.ready() or self.lost:
            return True
        if time.monotonic() - self.checked >= self.every:
            self.checked = time.monotonic()
            self.lost = self._lost()
            if self.lost:
                self.on_lost()
        return self.lost is not None

    def _lost(self) -> str | None:
        if self.result.state == "STARTED" and isinstance(self.result.info, dict):
            worker = self.result.info.get("hostname")
            if worker and not self.app.control.ping(destination=[worker], timeout=2.0):
                return (f'the Celery worker {worker} stopped answering while it ran step '
                        f'"{self.step_key}"; the step did not finish. Start a worker on queue '
                        f'"{self.queue}" and run again')
        elif self.result.state == "PENDING" and self.queue not in listening_queues(self.app):
            return (f'no Celery worker is left on queue "{self.queue}" for step '
                    f'"{self.step_key}"; start one and run again')
        return None

    def get(self):
        if self.lost:
            raise RuntimeError(self.lost)
        return self.result.get()

    def revoke(self):
        return self.result.revoke()


def _submit_checked(app, plan_context, step, queue, priority, known_state):
    listening = listening_queues(app)
    if queue not in listening:
        raise RuntimeError(
            f'no Celery worker listens on queue "{queue}", which step "{step.key}" needs '
            f"(workers listen on: {', '.join(sorted(listening)) or 'none'}). Start one: "
            f"python -m fer_data.worker --queues {queue}")
    def free_slot():
        plan_context.instance.event_log_storage.free_concurrency_slot_for_step(
            plan_context.run_id, step.key)

    return WatchedResult(_submit_task(app, plan_context, step, queue, priority, known_state),
                         app, step.key, queue, on_lost=free_slot)


class CheckedCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor, submitting through `_submit_checked`."""

    def execute(self, plan_context, execution_plan):
        return core_celery_execution_loop(plan_context, execution_plan,
                                          step_execution_fn=_submit_checked)


@executor(
    name="celery",
    config_schema={
        "broker": Field(Noneable(StringSource), is_required=False,
                        description="Celery broker URL (default: FER_CELERY_BROKER)."),
        "backend": Field(Noneable(StringSource), is_required=False,
                         description="Result backend URL (default: FER_CELERY_BACKEND)."),
    },
    requirements=multiple_process_executor_requirements(),
)
def celery_executor(init_context):
    """dagster-celery's executor with broker and backend from the environment, a check that
    each step's queue has a worker, and a watch on the worker running each step."""
    settings = celery_settings()
    config = init_context.executor_config
    return CheckedCeleryExecutor(
        retries=RetryMode(RetryMode.DISABLED),
        broker=config.get("broker") or settings["broker"],
        backend=config.get("backend") or settings["backend"],
        config_source=WORKER_CONFIG)
