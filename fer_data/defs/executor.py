"""Which Dagster executor runs the steps of a run, chosen by the code location's environment so
that the same code runs on a laptop and on a cluster:

    FER_EXECUTOR=multiprocess  (default) each step in its own process, at most FER_MAX_CONCURRENT
                               (default: the CPU count) at a time; the launchpad can override it
                               with `execution: {config: {max_concurrent: N}}`
    FER_EXECUTOR=in_process    every step in the run's process (debugging, tiny machines)
    FER_EXECUTOR=celery        dagster-celery's celery_executor: each step a Celery task,
                               run by a worker on any machine (`python -m fer_data.worker`);
                               broker and result backend from FER_CELERY_BROKER /
                               FER_CELERY_BACKEND (default: Redis on localhost) or the run
                               config's `execution: {config: ...}` (defs/celery_executor.py)
    FER_EXECUTOR=k8s           dagster-k8s's k8s_job_executor: each step a Kubernetes Job
    FER_EXECUTOR=celery_k8s    dagster-celery-k8s's celery_k8s_job_executor: steps queued on
                               Celery, run as Kubernetes Jobs

The cluster executors need `pip install 'fer-data[cluster]'`; README "Past one machine" and
deploy/helm-values.yaml show deployments. Steps that want a GPU carry GPU_STEP_TAGS, which all
three cluster executors read: on Celery they go to the `gpu` queue, every other step to
`dagster`.
"""

import os

from dagster import ExecutorDefinition, Field, in_process_executor, multiprocess_executor

EXECUTORS = ("multiprocess", "in_process", "celery", "k8s", "celery_k8s")

# Per-step settings for the GPU steps (StarGAN, the augmentation experiment). On Kubernetes
# the pod asks for one GPU, so only GPU nodes can take it, and tolerates the taint GPU node
# pools usually carry; on Celery the step goes to the "gpu" queue, which only workers on GPU
# nodes consume.
# Locally the "gpu" pool (dagster.yaml) runs them one at a time.
GPU_STEP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                             "effect": "NoSchedule"}]},
    },
    "dagster-celery/queue": "gpu",
}


def default_max_concurrent() -> int:
    value = os.environ.get("FER_MAX_CONCURRENT") or str(os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FER_MAX_CONCURRENT must be a positive integer, not {value!r}")
    return int(value)


def executor_from_env() -> ExecutorDefinition:
    """The executor named by FER_EXECUTOR (see the module docstring)."""
    name = os.environ.get("FER_EXECUTOR", "multiprocess")
    if name == "multiprocess":
        return multiprocess_executor.configured(
            lambda config: {"max_concurrent": config["max_concurrent"]},
            config_schema={"max_concurrent": Field(
                int, default_value=default_max_concurrent(),
                description="Steps running at once (FER_MAX_CONCURRENT, else the CPU count).")},
        )
    if name == "in_process":
        return in_process_executor
    if name == "celery":
        try:
            from fer_data.defs.celery_executor import celery_executor
        except ImportError as error:
            raise ImportError("FER_EXECUTOR=celery needs the cluster extras: "
                              "pip install 'fer-data[cluster]'") from error
        return celery_executor
    if name in ("k8s", "celery_k8s"):
        try:
            if name == "k8s":
                from dagster_k8s import k8s_job_executor as cluster_executor
            else:
                from dagster_celery_k8s import celery_k8s_job_executor as cluster_executor
        except ImportError as error:
            raise ImportError(f"FER_EXECUTOR={name} needs the cluster extras: "
                              "pip install 'fer-data[cluster]'") from error
        return cluster_executor
    raise ValueError(f"FER_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")

