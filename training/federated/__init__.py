"""Federated fine-tuning on Flower: sites that cannot pool their media train one detector together.

``task`` holds the model and data code (the project's training core: same model folders,
preprocessing, self-blending and augmentation), ``client_app`` and ``server_app`` are the two thin
Flower apps (FedProx: ``mu = 0`` is FedAvg), ``partitions`` says which site holds which faces and
``run`` drives a whole run in Flower's simulation engine (``python -m training federated``). The
same apps run across machines under Flower's deployment engine (``docs/federated.md``).
"""

import os

# Flower reports usage events over the network unless told not to; this project runs offline.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
