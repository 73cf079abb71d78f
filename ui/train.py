"""The Train tab: background jobs and Hub pushes behind the admin credential.

Light on purpose (SQLite, Plotly; no torch): the app imports it while drawing its page. Every
handler that launches, cancels, resumes, deletes, lists or shows jobs, or pushes to the Hub, checks
the admin credential first (``forensics.access``) and answers a one-line ``gr.Error`` without it;
their API names contain ``job`` or ``push``, which is how a reviewer finds them all.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from forensics import access, catalog
from forensics import settings as deployment
from forensics.core import ForensicsError
from forensics.jobs import KINDS, LABEL_ORDERS, MODEL_CHOICES, Job, JobSettings, JobStore
from ui.common import errors_as_one_line

TABLE_HEADERS = ["id", "name", "kind", "status", "progress", "created", "result"]
LABEL_ORDER_CHOICES = [" ".join(order) for order in LABEL_ORDERS]
KIND_CHOICES = list(zip(("train", "fine-tune", "distil", "evaluate", "federated (FedProx)"), KINDS))

INTRO = """Train, fine-tune, distil or evaluate a detector, or fine-tune one federated, in the background: each job runs as its own
process (a capped number of threads, at lower priority), one at a time unless configured otherwise,
and its state is kept on disk, so jobs survive a restart. A finished job's model appears in the
detector boxes at once, with its model card. Data: a folder (an ImageFolder tree with `real/` and
`fake/` subfolders, or a `labels.csv`) on the server, or a zip of such a tree. For three classes (label order
`real manipulated synthetic`: the verdict then also says which kind of fake it suspects), the tree has
`real/`, `manipulated/` and `synthetic/` subfolders, and self-blends join the manipulated class. A federated job (FedProx on
Flower, simulated on this server: `docs/federated.md`) takes a federated YAML config instead, such as
`configs/federated.yaml`: its epochs are rounds, its max steps the local steps per client and round."""


def admin_note() -> str:
    if access.admin_token():
        return "Jobs and Hub pushes need the **admin token** (`FORENSICS_ADMIN_TOKEN` on the server)."
    if access.admin_login():
        return "Jobs and Hub pushes are for the admin user (`FORENSICS_ADMIN_USER`), signed in."
    off = ("**Admin actions are switched off** on this server: no admin credential is configured. To turn them on, "
           "set `FORENSICS_ADMIN_TOKEN` (or `FORENSICS_ADMIN_USER` and `FORENSICS_ADMIN_PASSWORD`) and restart.")
    return off if deployment.is_public() else off + " Below: the jobs run here, read only."


@lru_cache(maxsize=1)
def store() -> JobStore:
    """The app's job store, opened once: opening reconciles jobs interrupted by a restart and
    starts what is queued."""
    return JobStore()


def _admin(token: str | None, request: gr.Request | None, action: str) -> None:
    with errors_as_one_line():
        access.require_admin(token, access.request_username(request), action)


def detector_names() -> list[str]:
    return list(catalog.available_detectors())


_CHOICES: dict = {}


def detector_box_choices() -> list[str]:
    """What the analysis tabs' detector boxes offer: named detectors, then their ONNX builds.
    Every open page asks every few seconds, so the answer is kept until a detector folder changes."""
    roots = catalog.detector_dirs()
    key = tuple((str(root), _mtime(root), *(_mtime(child) for child in _children(root))) for root in roots)
    if _CHOICES.get("key") != key:
        from forensics.detector_notes import offered_detectors

        _CHOICES.update(key=key, choices=offered_detectors())  # with their strengths; near-chance ones left out
    return list(_CHOICES["choices"])


def _children(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


# -- the jobs table and one job's details ----------------------------------------------------------


def jobs_table() -> list[list]:
    rows = []
    for job in store().list():
        fraction, _ = job.progress()
        rows.append([job.id, job.name, job.kind, job.status, f"{fraction:.0%}",
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at)), _result(job)])
    return rows


def _result(job: Job) -> str:
    if job.error:
        return job.error[:120]
    metrics = job.metrics or {}
    auc = metrics.get("val_roc_auc", metrics.get("roc_auc"))
    parts = [f"AUC {auc:.3f}"] if isinstance(auc, (int, float)) else []
    if job.model_dir:
        parts.append(f"model {job.model_dir.rstrip('/').rsplit('/', 1)[-1]}")
    return ", ".join(parts)


def job_status(job: Job) -> str:
    fraction, stage = job.progress()
    lines = [f"### Job {job.id}: {job.name} ({job.kind})", "",
             f"**{job.status}**, {fraction:.0%} ({stage})"]
    if job.started_at:
        end = job.finished_at or time.time()
        lines[-1] += f", {end - job.started_at:.0f} s"
    if job.error:
        lines += ["", f"Error: `{job.error}`"]
    if job.model_dir:
        lines += ["", f"Model: `{job.model_dir.rstrip('/').rsplit('/', 1)[-1]}` (now in the detector boxes)"]
    if job.metrics:
        shown = {k: v for k, v in job.metrics.items() if isinstance(v, (int, float)) and v is not None}
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in shown.items()]
    return "\n".join(lines)


def job_card(job: Job) -> str:
    """The published model's card (README.md), shown under the job."""
    text = catalog.read_card(Path(job.model_dir)) if job.model_dir else ""
    if not text:
        return ""
    # The card's headings, three levels down, so they sit under this heading instead of dwarfing the tab.
    text = re.sub(r"^(#{1,6})\s", lambda m: "#" * min(6, len(m.group(1)) + 3) + " ", text, flags=re.MULTILINE)
    return "#### Model card\n\n" + text


def curves_figure(job: Job) -> go.Figure | None:
    """Training loss (every logged step and each epoch's mean) and validation ROC-AUC / F1 per epoch."""
    history, steps = job.history(), job.step_losses()
    if not history and not steps:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss", "Validation"))
    if steps:
        fig.add_trace(go.Scatter(x=[s["step"] for s in steps], y=[s["loss"] for s in steps], mode="lines",
                                 name="loss (logged steps)"), row=1, col=1)
    if history:
        fig.add_trace(go.Scatter(x=[h["step"] for h in history], y=[h["train_loss"] for h in history],
                                 mode="lines+markers", name="epoch mean loss"), row=1, col=1)
        epochs = [h["epoch"] for h in history]
        for key, name in (("roc_auc", "ROC-AUC"), ("f1", "F1")):
            fig.add_trace(go.Scatter(x=epochs, y=[h["val"].get(key) for h in history], mode="lines+markers",
                                     name=f"validation {name}"), row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2, dtick=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=340, margin=dict(l=50, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def _job(job_id) -> Job | None:
    try:
        return store().get(int(job_id)) if job_id not in (None, "") else None
    except (ForensicsError, ValueError, TypeError):
        return None


def _details(job: Job | None) -> tuple:
    if job is None:
        return "Select a job (click a row of the table).", None, "", ""
    return job_status(job), curves_figure(job), job.log_tail(), job_card(job)


def _signature(job: Job | None) -> tuple | None:
    """What changes when a job's details do: status, log size, epochs and steps logged."""
    if job is None:
        return None
    log = Path(job.log_path)
    return (job.id, job.status, log.stat().st_size if log.is_file() else 0, len(job.history()),
            len(job.step_losses()))


# -- API endpoints (all behind the admin credential) -------------------------------------------


def submit_job(kind, base, model, data, data_zip, epochs, lr, batch_size, image_size, sbi, label_order,
               max_steps, name, admin_token, mu=0.01, request: gr.Request = None):
    """Queue a training, fine-tuning, distillation, evaluation or federated job (its data: the
    federated YAML config, epochs: its rounds, max steps: local steps per client and round, ``mu``:
    FedProx's weight); returns (message, job id, table)."""
    _admin(admin_token, request, "launching a job")
    with errors_as_one_line(OSError):
        if data_zip:
            data = str(store().unpack_dataset(data_zip))
        settings = JobSettings(kind=kind or "train", data=data or "", model=model or "hybrid", base=base or None,
                               epochs=epochs, lr=lr, batch_size=batch_size, image_size=image_size, sbi=bool(sbi),
                               labels=(label_order or "real fake").split(), max_steps=max_steps or None,
                               name=name or None, mu=0.01 if mu is None else mu)
        job = store().submit(settings)
    where = "started" if job.status == "running" else "queued (another job is running)"
    return f"Job {job.id} ({job.name}) {where}.", job.id, jobs_table()


def list_jobs(admin_token: str = "", request: gr.Request = None) -> list[dict]:
    """Every job, newest first, as JSON: settings, command, status, times, progress, metrics, model folder."""
    _admin(admin_token, request, "listing jobs")
    return [job.to_dict() for job in store().list()]


def _with_store(admin_token, request, action: str, call):
    """The admin check, then ``call(store)``; a refusal or a store error is a one-line gr.Error."""
    _admin(admin_token, request, action)
    with errors_as_one_line():
        return call(store())


def show_job(job_id, admin_token, request: gr.Request = None):
    """One job: status (with metrics), loss and metric curves, log tail, model card."""
    return _details(_with_store(admin_token, request, "showing a job", lambda jobs: jobs.get(job_id)))


def cancel_job(job_id, admin_token, request: gr.Request = None):
    """Stop a queued or running job (its processes are killed)."""
    job = _with_store(admin_token, request, "cancelling a job", lambda jobs: jobs.cancel(job_id))
    return f"Job {job.id} {job.status}.", jobs_table()


def resume_job(job_id, admin_token, request: gr.Request = None):
    """Run a failed or cancelled job again, continuing from its last checkpoint."""
    job = _with_store(admin_token, request, "resuming a job", lambda jobs: jobs.resume(job_id))
    return f"Job {job.id} {job.status} (continues from its last checkpoint).", jobs_table()


def delete_job(job_id, admin_token, request: gr.Request = None):
    """Remove a job with its run folder and the model it published."""
    _with_store(admin_token, request, "deleting a job", lambda jobs: jobs.delete(job_id))
    return f"Job {int(job_id)} deleted.", None, jobs_table()


def push_model(model, repo_id, private, admin_token, request: gr.Request = None):
    """Upload a model folder (safetensors, configs, generated card) to a Hub repo, private by default."""
    _admin(admin_token, request, "pushing to the Hub")
    from forensics.hub import push_model as push

    with errors_as_one_line():
        result = push(model or "", repo_id or "", private=bool(private))
    visibility = "private" if result["private"] else "public"
    return f"Pushed `{', '.join(result['files'])}` to [{result['repo_id']}]({result['repo_url']}) ({visibility})."


# -- UI-only events (private: not in the API) ------------------------------------------------------


@dataclass
class JobsView:
    """What the timer redraws: the jobs table, the chosen job's details, the detector boxes (the
    analysis tabs', then this tab's base-detector and push boxes) and what was drawn last."""

    table: gr.Dataframe
    status: gr.Markdown
    curves: gr.Plot
    log: gr.Textbox
    card: gr.Markdown
    boxes: list
    seen: gr.State

    def refresh(self, job_id, admin_token, seen, request: gr.Request = None) -> dict:
        """The timer's tick: the table and the chosen job's details for the admin; for everyone, new
        models in the detector boxes the moment a job publishes one. What did not change is left out."""
        models = detector_box_choices()
        out = {self.seen: {"models": models}}
        if models != (seen or {}).get("models"):
            names = detector_names()
            out.update({box: gr.Dropdown(choices=models if i < 2 else names) for i, box in enumerate(self.boxes)})
        blank = {self.status: "", self.curves: None, self.log: "", self.card: ""}
        _reconcile_now_and_then()
        if not access.admin_configured():  # admin actions off (said once, at the top): the jobs, read only
            # ... to the operator's own private server; a public one shows visitors nothing of its jobs
            return {**out, **blank, self.table: [] if deployment.is_public() else _read_only_jobs()}
        if not access.is_admin(admin_token, access.request_username(request)):
            return {**out, **blank, self.table: [], self.status: "Enter the admin token to see and manage jobs."}
        try:
            job = _job(job_id)
            table = jobs_table()
        except (OSError, sqlite3.Error) as exc:  # an unwritable or broken home: say so, once per tick
            return {**out, **blank, self.table: [], self.status: f"Jobs are unavailable: {exc}"}
        key = _signature(job)
        out[self.seen] = {"models": models, "key": key}
        if key is not None and (seen or {}).get("key") == key:  # nothing new: leave the plot and log as drawn
            return {**out, self.table: table}
        return {**out, self.table: table, **dict(zip((self.status, self.curves, self.log, self.card), _details(job)))}


_RECONCILED = {"at": 0.0}
RECONCILE_EVERY_S = 10.0


def _reconcile_now_and_then() -> None:
    """Every RECONCILE_EVERY_S (the timer ticks every 2 s): a job marked running whose processes are gone
    (killed, out of memory) is marked failed and the queue moves on, while the app runs, not only when
    it starts again. Only where jobs were ever run; a store that cannot be opened is said elsewhere."""
    now = time.monotonic()
    if now - _RECONCILED["at"] < RECONCILE_EVERY_S or not (catalog.forensics_home() / "jobs.db").is_file():
        return
    _RECONCILED["at"] = now
    try:
        store().reconcile()
    except (OSError, sqlite3.Error, ForensicsError):
        pass


def _read_only_jobs() -> list:
    """The jobs table for a server without admin actions (jobs run there from the CLI); never
    creates a job store where none was ever used."""
    if not (catalog.forensics_home() / "jobs.db").is_file():
        return []
    try:
        return jobs_table()
    except (OSError, sqlite3.Error, ForensicsError):
        return []


def pick_job(table, evt: gr.SelectData):
    """A click on a row of the jobs table selects that job."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    try:
        return int(table.iloc[row, 0]) if hasattr(table, "iloc") else int(table[row][0])
    except (IndexError, ValueError, TypeError, KeyError):
        return gr.skip()


def open_store() -> None:
    """Called once at app start: reconcile interrupted jobs and start queued ones (where jobs were
    ever run: an app that never ran one creates nothing on disk)."""
    if not (catalog.forensics_home() / "jobs.db").is_file():
        return
    try:
        store()
    except (OSError, sqlite3.Error, ForensicsError) as exc:  # a read-only home must not stop the app
        print(f"jobs: {exc}")


def build(detector_boxes: list) -> None:
    """Lay out and wire the tab; ``detector_boxes``: the analysis tabs' detector boxes, which learn of new models."""
    gr.Markdown(INTRO + "\n\n" + admin_note())
    admin = access.admin_configured()  # off: the forms are hidden and the job list is read only
    with gr.Row():
        with gr.Column(scale=2, visible=admin):
            kind = gr.Radio(KIND_CHOICES, value="train", label="Job")
            base = gr.Dropdown(detector_names(), value=None, allow_custom_value=True,
                               label="Base detector (fine-tune: start from; distil: teacher; evaluate: measured)")
            model = gr.Dropdown(list(MODEL_CHOICES), value="hybrid", label="Architecture (train, distil)")
            data = gr.Textbox(label="Dataset on the server (ImageFolder folder with real/ and fake/, or labels.csv; "
                                    "federated: its YAML config)")
            data_zip = gr.File(label="...or upload a zip of an ImageFolder tree", file_types=[".zip"], type="filepath")
            with gr.Row():
                # No minimum here: Gradio's own refusal ("Value 0 is less than minimum value 1.") names no field;
                # the job's checks do ("epochs 0 must be a whole number from 1 to 1000").
                epochs = gr.Number(4, label="Epochs", precision=0)
                lr = gr.Number(3e-4, label="Learning rate")
                batch = gr.Number(16, label="Batch size", precision=0)
                size = gr.Number(224, label="Image size", precision=0)
            with gr.Row():
                sbi = gr.Checkbox(True, label="Self-blended pseudo-fakes")
                labels = gr.Radio(LABEL_ORDER_CHOICES, value="real fake", label="Label order")
            with gr.Accordion("More", open=False):
                max_steps = gr.Number(None, label="Stop after this many steps (empty: all)", precision=0)
                mu = gr.Number(0.01, label="FedProx mu (federated; 0 is FedAvg)")
                name = gr.Textbox(label="Name of the model it makes (default job<id>-<architecture>)")
            token = gr.Textbox(label="Admin token", type="password")
            submit = gr.Button("Start job", variant="primary")
            message = gr.Markdown()
            with gr.Accordion("Push a model to the Hugging Face Hub", open=False):
                push_from = gr.Dropdown(detector_names(), allow_custom_value=True,
                                        label="Model (a detector name or a model folder)")
                repo = gr.Textbox(label="Hub repo (user-or-org/name)")
                private = gr.Checkbox(True, label="Private repo")
                push = gr.Button("Push to the Hub")
                pushed = gr.Markdown()
        # Without an admin: a private server lists its jobs, read only (nothing to click into); a public one nothing.
        with gr.Column(scale=3, visible=admin or not deployment.is_public()):
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Jobs (click a row)" if admin else "Jobs (read only)",
                                 interactive=False, max_height=260)
            with gr.Row(equal_height=True, visible=admin):
                job = gr.Number(None, label="Job", precision=0, min_width=80)
                show, cancel, resume, delete = (gr.Button(text, min_width=80) for text in
                                                ("Show", "Cancel", "Resume", "Delete"))
            with gr.Column(visible=admin):
                status = gr.Markdown()
                curves = gr.Plot(label="Loss and validation metrics")
                log = gr.Textbox(label="Log", lines=12, max_lines=12, autoscroll=True, interactive=False)
                card = gr.Markdown()
    view = JobsView(table, status, curves, log, card, [*detector_boxes, base, push_from], gr.State({}))
    settings = [kind, base, model, data, data_zip, epochs, lr, batch, size, sbi, labels, max_steps, name, token, mu]
    # The last submission's line goes first: a refused one (a toast) must not leave "Job 10 queued" under the button.
    submit.click(lambda: "", None, [message], api_visibility="private", queue=False).then(
        submit_job, settings, [message, job, table], api_name="submit_job")
    show.click(show_job, [job, token], [status, curves, log, card], api_name="show_job")
    cancel.click(cancel_job, [job, token], [message, table], api_name="cancel_job")
    resume.click(resume_job, [job, token], [message, table], api_name="resume_job")
    delete.click(delete_job, [job, token], [message, job, table], api_name="delete_job")
    push.click(push_model, [push_from, repo, private, token], [pushed], api_name="push_model")
    gr.api(list_jobs, api_name="list_jobs")
    table.select(pick_job, [table], [job], api_visibility="private")
    gr.Timer(2.0).tick(view.refresh, [job, token, view.seen],
                       [table, status, curves, log, card, *view.boxes, view.seen],
                       api_visibility="private", concurrency_limit=None, show_progress="hidden")
