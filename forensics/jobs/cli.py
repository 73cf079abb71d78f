"""``python -m forensics jobs ...``, ``push`` and ``pull``: background jobs and the Hub from the
command line, sharing the app's job store (``$FORENSICS_HOME``).

The command line runs on the server itself, so it needs no admin token: whoever has a shell there
already holds more than the token grants.
"""

from __future__ import annotations

import argparse
import json
import time

from forensics.core import JobError

COMMANDS = ("jobs", "push", "pull")


def add_parsers(sub) -> None:
    jobs = sub.add_parser("jobs", help="background training, fine-tuning, distillation and evaluation jobs")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every job, newest first")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one job: settings, status, progress, metrics and its log")
    show.add_argument("job")
    show.add_argument("--json", action="store_true")
    show.add_argument("--lines", type=int, default=20, help="log lines shown (default 20)")
    for name, text in (("cancel", "stop a queued or running job (its processes are killed)"),
                       ("resume", "run a failed or cancelled job again, from its last checkpoint"),
                       ("delete", "remove a job, its run folder and the model it published")):
        actions.add_parser(name, help=text).add_argument("job")
    submit = actions.add_parser(
        "submit", help="queue a job",
        description="Queue a job. Options after --training-args (last) go to `python -m training` unchanged, "
                    "e.g. `--training-args --val-fraction 0.3 --holdout-sources`.")
    submit.add_argument("kind", choices=["train", "finetune", "distill", "evaluate", "federated"])
    submit.add_argument("--data", required=True, help="ImageFolder tree (real/ fake/ ...), a labels.csv or a .zip; "
                        "federated: its YAML config (epochs: rounds, --max-steps: local steps per round)")
    submit.add_argument("--mu", type=float, default=0.01, help="federated: FedProx's proximal weight (0: FedAvg)")
    submit.add_argument("--model", default="hybrid", help="architecture trained (train, distill): hybrid, "
                        "mobilenetv2, patch, patch-tiny, vit-tiny")
    submit.add_argument("--base", help="detector to fine-tune, the teacher to distil, or the detector to evaluate")
    submit.add_argument("--epochs", type=int, default=4)
    submit.add_argument("--lr", type=float, default=3e-4)
    submit.add_argument("--batch-size", type=int, default=16)
    submit.add_argument("--image-size", type=int, default=224)
    submit.add_argument("--sbi", action=argparse.BooleanOptionalAction, default=True)
    submit.add_argument("--labels", nargs="+", default=["real", "fake"], metavar="LABEL",
                        help="the label order: real fake (the default), fake real, or real manipulated synthetic")
    submit.add_argument("--max-steps", type=int)
    submit.add_argument("--name", help="name of the model it publishes (default job<id>-<model>)")
    submit.add_argument("--wait", action="store_true", help="wait for it to end; exit 0 only if it finished")
    submit.add_argument("--training-args", nargs=argparse.REMAINDER, default=[],
                        help="(last) further `python -m training` options, passed on unchanged")
    push = sub.add_parser("push", help="upload a model folder to a Hugging Face Hub repo (private by default)")
    push.add_argument("model", help="a named detector or a model folder")
    push.add_argument("repo_id", help="user-or-org/model-name")
    push.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    push.add_argument("--endpoint", help="the Hub's URL (default: HF_ENDPOINT or huggingface.co)")
    pull = sub.add_parser("pull", help="download a Hub model (org/name[@revision]) and check that it loads")
    pull.add_argument("repo_id")


def run(args) -> int:
    if args.command == "push":
        from forensics.hub import push_model

        result = push_model(args.model, args.repo_id, private=not args.public, endpoint=args.endpoint)
        print(json.dumps(result, indent=2))
        return 0
    if args.command == "pull":
        from forensics.hub_download import check_detector

        located = check_detector(args.repo_id)  # fetched, and a bad id or an untrained model refused, before torch
        from forensics.detectors import load_detector

        print(json.dumps(load_detector(located).describe(), indent=2))
        return 0
    from forensics.jobs import JobSettings, JobStore

    store = JobStore()
    if args.action == "list":
        jobs = store.list()
        if args.json:
            print(json.dumps([j.to_dict() for j in jobs], indent=2, default=str))
        for job in [] if args.json else jobs:
            fraction, stage = job.progress()
            print(f"{job.id:>4}  {job.kind:<9} {job.status:<9} {fraction:4.0%}  {job.name:<28} {stage}")
        if not jobs and not args.json:
            print(f"No jobs in {store.home}: `python -m forensics jobs submit ...` queues one.")
        return 0
    if args.action == "submit":
        ours = [a for a in args.training_args if a in ("--wait", "--name", "--base", "--data")]
        if ours:  # argparse.REMAINDER takes them too: they would reach `python -m training`, which refuses them
            raise JobError(f"{ours[0]} must come before --training-args, which passes on everything after it")
        data = args.data
        if data.lower().endswith(".zip"):
            data = str(store.unpack_dataset(data))
        job = store.submit(JobSettings(kind=args.kind, data=data, model=args.model, base=args.base, epochs=args.epochs,
                                       lr=args.lr, batch_size=args.batch_size, image_size=args.image_size,
                                       sbi=args.sbi, labels=list(args.labels), max_steps=args.max_steps,
                                       name=args.name, mu=args.mu, extra=list(args.training_args)))
        print(f"job {job.id} {job.status}: {job.name}")
        if not args.wait:
            return 0
        while store.get(job.id).active:
            time.sleep(1.0)
        job = store.get(job.id)
        print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else "")
              + (f"; model {job.model_dir}" if job.model_dir else ""))
        return 0 if job.status == "finished" else 2
    if args.action == "show":
        job = store.get(args.job)
        if args.json:
            print(json.dumps(job.to_dict(), indent=2, default=str))
            return 0
        fraction, stage = job.progress()
        print(f"job {job.id} ({job.kind}) {job.name}: {job.status}, {fraction:.0%} ({stage})")
        print("command: " + " ".join(job.command))
        for key in ("error", "model_dir"):
            if getattr(job, key):
                print(f"{key}: {getattr(job, key)}")
        if job.metrics:
            print("metrics: " + json.dumps(job.metrics))
        print(job.log_tail(args.lines))
        return 0
    if args.action == "cancel":
        job = store.cancel(args.job)
        print(f"job {job.id} {job.status}")
        return 0
    if args.action == "resume":
        job = store.resume(args.job)
        print(f"job {job.id} {job.status} (continues from its last checkpoint)")
        return 0
    if args.action == "delete":
        store.delete(args.job)
        print(f"job {args.job} deleted")
        return 0
    return 1
