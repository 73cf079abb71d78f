"""Background jobs: training, fine-tuning, distillation, evaluation and federated runs as
``python -m training`` processes, supervised apart from the web server (:mod:`.store` says why).

``store`` (the SQLite job store and queue), ``runner`` (the supervisor process), ``settings`` (what
a job runs and the command it becomes), ``logs``, ``processes``, ``archives`` (dataset zips), ``cli``.
"""

from forensics.jobs.processes import process_alive, process_start_token
from forensics.jobs.settings import (
    ARCHITECTURES,
    KINDS,
    LABEL_ORDERS,
    MODEL_CHOICES,
    TRAINING_KINDS,
    JobSettings,
    build_command,
    validate,
)
from forensics.jobs.store import STATUSES, Job, JobStore, publish_name

__all__ = ["ARCHITECTURES", "KINDS", "LABEL_ORDERS", "MODEL_CHOICES", "STATUSES", "TRAINING_KINDS", "Job",
           "JobSettings", "JobStore", "build_command", "process_alive", "process_start_token", "publish_name",
           "validate"]
