"""Who may do what: anyone may analyse media; launching, cancelling, resuming and deleting jobs and
pushing to the Hub need the admin credential.

The credential is a token from the server's environment (``FORENSICS_ADMIN_TOKEN``), typed into the
Train tab or passed as the API's ``admin_token`` parameter; or, where the app is run behind Gradio's
login (``FORENSICS_ADMIN_USER`` and ``FORENSICS_ADMIN_PASSWORD``), being logged in as that user.
Gradio's login closes the whole app, so a public Space uses the token. With neither configured the
admin actions are switched off: a public deployment is safe by default.
"""

from __future__ import annotations

import hmac
import os

from forensics.core import AccessError

TOKEN_ENV = "FORENSICS_ADMIN_TOKEN"
USER_ENV = "FORENSICS_ADMIN_USER"
PASSWORD_ENV = "FORENSICS_ADMIN_PASSWORD"


def admin_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def admin_login() -> tuple[str, str] | None:
    """(user, password) for Gradio's login, when both are set."""
    user, password = os.environ.get(USER_ENV, "").strip(), os.environ.get(PASSWORD_ENV, "")
    return (user, password) if user and password else None


def admin_configured() -> bool:
    return admin_token() is not None or admin_login() is not None


def is_admin(token: str | None = None, username: str | None = None) -> bool:
    """Whether this token (compared in constant time) or this logged-in user is the admin."""
    expected = admin_token()
    if expected and token and hmac.compare_digest(token.strip().encode(), expected.encode()):
        return True
    login = admin_login()
    return bool(login and username and hmac.compare_digest(username.encode(), login[0].encode()))


def require_admin(token: str | None = None, username: str | None = None, action: str = "this action") -> None:
    """Raise a one-line ``AccessError`` unless the caller holds the admin credential."""
    if not admin_configured():
        raise AccessError(f"{action} needs an admin credential, and none is configured on this server: "
                          f"set {TOKEN_ENV} (or {USER_ENV} and {PASSWORD_ENV}) to enable it")
    if is_admin(token, username):
        return
    if token:
        raise AccessError(f"{action} needs an admin credential: the admin token given is wrong")
    raise AccessError(f"{action} needs an admin credential: enter the admin token ({TOKEN_ENV})")


def request_username(request) -> str | None:
    """The logged-in user of a Gradio request, if the app runs behind Gradio's login."""
    return getattr(request, "username", None) if request is not None else None
