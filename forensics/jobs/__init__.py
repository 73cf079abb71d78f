"""Background jobs as ``python -m training`` processes, supervised apart from the web server:
``store`` (SQLite store and queue; it says why), ``runner`` (the supervisor), ``settings`` (what a
job runs, the command it becomes), ``logs``, ``processes``, ``archives`` (dataset zips), ``cli``."""

from forensics.jobs.processes import process_alive, process_start_token
from forensics.jobs.settings import ARCHITECTURES, KINDS, LABEL_ORDERS, MODEL_CHOICES, TRAINING_KINDS, JobSettings
from forensics.jobs.settings import build_command, validate
from forensics.jobs.store import STATUSES, Job, JobStore, publish_name

__all__ = ["ARCHITECTURES", "KINDS", "LABEL_ORDERS", "MODEL_CHOICES", "STATUSES", "TRAINING_KINDS", "Job",
           "JobSettings", "JobStore", "build_command", "process_alive", "process_start_token", "publish_name",
           "validate"]
