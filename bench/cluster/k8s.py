"""A suite as a Kubeflow Trainer TrainJob (trainer.kubeflow.org/v1alpha1) for the CUDA image.

The ``torch-distributed`` ClusterTrainingRuntime starts one pod per node and sets torchrun's variables in each
(PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT), which ``bench run`` reads (bench.cluster): every pod
runs the same ``bench run`` and node 0's pod writes the records into the results volume (a PersistentVolumeClaim
the user names). Records carry the Kubernetes node's name as their host (BENCH_HOST), not the pod's.
"""

from __future__ import annotations

import re
import shlex

import yaml

from bench import cluster, text

API_VERSION = "trainer.kubeflow.org/v1alpha1"
RUNTIME = "torch-distributed"  # Kubeflow Trainer's PyTorch runtime; its replicated job and container are "node"
NODE = "node"
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 label: the TrainJob's name
SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # a claim's


def trainjob(name: str, image: str, run_args: list[str], nodes: int = 1, gpus_per_node: int = 1,
             results_claim: str = "bench-results") -> dict:  # fmt: skip
    """The TrainJob as a dict. ``run_args`` are ``bench run``'s; the results folder is the claim's mount, the run id
    the job's name (so that a job run again resumes), and every cell spans the job's nodes unless they say
    ``--nodes``."""
    if not LABEL.fullmatch(name):
        raise ValueError(f"bench k8s --name {name[:80]!r}: a Kubernetes name (RFC 1123 label): lower-case letters, "
                         "digits and '-', starting and ending with a letter or digit, at most 63")  # fmt: skip
    if not SUBDOMAIN.fullmatch(results_claim):
        raise ValueError(f"bench k8s --results-claim {results_claim[:80]!r}: a PersistentVolumeClaim's name "
                         "(RFC 1123: lower-case letters, digits, '-' and '.')")  # fmt: skip
    if nodes < 1 or gpus_per_node < 1:
        raise ValueError("bench k8s: --nodes and --gpus-per-node must be at least 1")
    text.plain(run_args, "bench k8s")
    text.image(image, "bench k8s --image")
    given = cluster.option(run_args, "--run-id")
    if given not in (None, name):
        raise ValueError(f"bench k8s: --run-id {given!r} and --name {name!r}: the TrainJob's name is its run id; "
                         f"give --name {given} (or leave --run-id out)")  # fmt: skip
    run_args = cluster.without(run_args, "--run-id")  # the name's, below
    args = [*cluster.spanning(run_args, nodes), "--results-dir", "/results", "--run-id", name]
    mounts = [{"name": "results", "mountPath": "/results"}, {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [
        {"name": "results", "persistentVolumeClaim": {"claimName": results_claim}},
        # DataLoader workers share batches through /dev/shm, which a container gets only 64 MiB of by default
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    pod = {"spec": {"volumes": volumes, "containers": [{"name": NODE, "volumeMounts": mounts}]}}
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "bench"}},
        "spec": {
            "runtimeRef": {"name": RUNTIME},
            "trainer": {
                "image": image,
                "command": ["bench", "run", *args],
                "numNodes": nodes,
                "resourcesPerNode": {"limits": {"nvidia.com/gpu": str(gpus_per_node)}},
                "env": [{"name": "BENCH_HOST", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            },
            "runtimePatches": [
                {
                    "manager": "bench",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": pod}}}],
                            }
                        }
                    },
                }
            ],
        },
    }


HEADER = "Written by `bench k8s`"  # the manifest's first line: bench replaces a file only where it has it


def render(job: dict) -> str:
    command = shlex.join(job["spec"]["trainer"]["command"])
    return f"# {HEADER}; each node's pod runs: {command}\n" + yaml.safe_dump(job, sort_keys=False)


def validate(job: dict) -> None:
    """Check ``job`` against the Kubeflow Trainer API's models (kubeflow-trainer-api, pydantic, generated from the
    API's OpenAPI schema): every field's type, the required ones, and no field the API does not have (the models
    drop unknown fields, so a round trip that loses one is an error). Raises ValueError naming the problem."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
    from pydantic import ValidationError

    if (job.get("apiVersion"), job.get("kind")) != (API_VERSION, "TrainJob"):
        raise ValueError(f"not a {API_VERSION} TrainJob: apiVersion {job.get('apiVersion')}, kind {job.get('kind')}")
    try:
        model = TrainerV1alpha1TrainJob.from_dict(job)
    except ValidationError as e:
        raise ValueError(f"the TrainJob does not fit the Kubeflow Trainer API: {e}") from e
    lost = _difference(job, model.to_dict())
    if lost:
        raise ValueError(f"fields the Kubeflow Trainer API does not have: {', '.join(lost)}")


def _difference(given: object, kept: object, path: str = "") -> list[str]:
    """The paths in ``given`` that ``kept`` lacks or holds differently."""
    if isinstance(given, dict) and isinstance(kept, dict):
        return [p for k, v in given.items() for p in _difference(v, kept.get(k, _MISSING), f"{path}.{k}".lstrip("."))]
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [p for i, (a, b) in enumerate(zip(given, kept)) for p in _difference(a, b, f"{path}[{i}]")]
    return [] if given == kept else [path]


_MISSING = object()
