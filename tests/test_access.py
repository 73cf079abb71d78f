"""Who may do what: the admin credential's rules, and the Train tab's handlers refusing without it
(in process; tests/test_app_jobs.py checks the same through the served API)."""

from __future__ import annotations

import gradio as gr
import pytest

from forensics import access
from forensics.core import AccessError
from ui import train as jobs_ui


@pytest.fixture
def no_admin(monkeypatch):
    for name in (access.TOKEN_ENV, access.USER_ENV, access.PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)


def test_without_a_configured_credential_admin_actions_are_off(no_admin):
    assert not access.admin_configured() and not access.is_admin("anything", "anyone")
    with pytest.raises(AccessError, match="needs an admin credential, and none is configured on this server"):
        access.require_admin("anything", action="launching a job")


def test_the_token_must_match_exactly(no_admin, monkeypatch):
    monkeypatch.setenv(access.TOKEN_ENV, "s3cret-token")
    access.require_admin("s3cret-token")
    access.require_admin("  s3cret-token ")  # pasted with spaces
    with pytest.raises(AccessError, match="needs an admin credential: enter the admin token"):
        access.require_admin("")
    for wrong in ("s3cret", "s3cret-token-and-more", "S3CRET-TOKEN"):
        with pytest.raises(AccessError, match="the admin token given is wrong"):
            access.require_admin(wrong)
    assert access.admin_login() is None


def test_the_gradio_login_user_is_the_admin(no_admin, monkeypatch):
    monkeypatch.setenv(access.USER_ENV, "curator")
    monkeypatch.setenv(access.PASSWORD_ENV, "pw")
    assert access.admin_login() == ("curator", "pw")
    access.require_admin(None, "curator")
    with pytest.raises(AccessError, match="needs an admin credential"):
        access.require_admin(None, "visitor")
    monkeypatch.setenv(access.PASSWORD_ENV, "")
    assert access.admin_login() is None and not access.admin_configured()


def test_train_tab_handlers_refuse_before_doing_anything(no_admin, monkeypatch, tmp_path):
    monkeypatch.setenv("FORENSICS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(access.TOKEN_ENV, "right")
    calls = [
        lambda t: jobs_ui.submit_job("train", None, "hybrid", str(tmp_path), None, 1, 3e-4, 2, 64, True, "real fake",
                                     None, None, t),
        lambda t: jobs_ui.list_jobs(t),
        lambda t: jobs_ui.show_job(1, t),
        lambda t: jobs_ui.cancel_job(1, t),
        lambda t: jobs_ui.resume_job(1, t),
        lambda t: jobs_ui.delete_job(1, t),
        lambda t: jobs_ui.push_model("default", "me/x", True, t),
    ]
    for call in calls:
        for token in (None, "wrong"):
            with pytest.raises(gr.Error, match="needs an admin credential"):
                call(token)
    assert not (tmp_path / "home").exists()  # refused before the job store was even opened
    with gr.Blocks():
        view = jobs_ui.JobsView(*(gr.Markdown() for _ in range(5)), [gr.Dropdown() for _ in range(4)], gr.State())
    assert view.refresh(None, "wrong", {})[view.status] == "Enter the admin token to see and manage jobs."
