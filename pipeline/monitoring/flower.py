"""Flower with basic authentication on by default.

``pipeline flower`` passes PIPELINE_FLOWER_BASIC_AUTH to Flower's ``--basic-auth`` in its own
process (``app.start``, not a new command line, so the password never shows in ``ps``).
Without credentials it refuses to start unless PIPELINE_FLOWER_UNAUTHENTICATED=true.
``up --local`` makes random credentials once and keeps them in its state directory.

Flower 2.2 checks the credentials on its UI and ``/api`` handlers only: ``/metrics`` (Flower's
own Prometheus metrics) and ``/healthcheck`` answer anyone who can reach the port.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

#: The user name ``up --local`` gives Flower.
LOCAL_USER = "pipeline"
#: The file in the state directory that holds ``up --local``'s Flower credentials (mode 0600).
CREDENTIALS_FILE = "flower-credentials"
#: Random bytes in a generated password (32 URL-safe characters).
PASSWORD_BYTES = 24


@dataclass(frozen=True)
class Credentials:
    """One ``user:password`` pair and the file it is kept in."""

    user: str
    password: str = field(repr=False)
    path: Path

    @property
    def basic_auth(self) -> str:
        return f"{self.user}:{self.password}"


def flower_argv(settings: Settings) -> list[str]:
    """Flower's arguments for ``settings``; ConfigurationError when neither auth nor its opt-out is set."""
    argv = ["flower", f"--address={settings.flower_address}", f"--port={settings.flower_port}"]
    if settings.flower_credentials:
        return [*argv, f"--basic-auth={','.join(settings.flower_credentials)}"]
    if settings.flower_unauthenticated:
        return argv
    raise ConfigurationError("Flower needs PIPELINE_FLOWER_BASIC_AUTH=user:password, or "
                             "PIPELINE_FLOWER_UNAUTHENTICATED=true to run it without authentication")


def local_credentials(state_dir: Path) -> Credentials:
    """The local stack's Flower credentials: read from the state directory, or made and written there (0600)."""
    path = state_dir / CREDENTIALS_FILE
    if path.exists():
        user, _, password = path.read_text().strip().partition(":")
        if user and password:
            return Credentials(user, password, path)
    credentials = Credentials(LOCAL_USER, secrets.token_urlsafe(PASSWORD_BYTES), path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(credentials.basic_auth + "\n")
    os.chmod(path, 0o600)  # an older file may have had wider permissions
    return credentials
