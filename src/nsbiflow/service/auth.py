"""Bearer-token authentication: one shared token, compared in constant time, never logged.

The token comes from a file (a mounted Kubernetes Secret; re-read when its modification time changes, so
a rotated Secret takes effect without a restart) or from an environment variable.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import threading
from pathlib import Path

from nsbiflow.service.errors import ServiceError
from nsbiflow.service.settings import MIN_TOKEN_LENGTH, ServiceSettings


class AuthConfigError(ServiceError):
    """The token is missing or unusable: the server refuses to start."""


class TokenChecker:
    """Holds the expected token and checks ``Authorization`` headers against it."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._token: bytes | None = None
        self._mtime: float | None = None
        if not settings.no_auth:
            self._token = self._load()

    @property
    def enabled(self) -> bool:
        """Whether requests need a token."""
        return not self._settings.no_auth

    def _load(self) -> bytes:
        settings = self._settings
        if settings.token_file:
            path = Path(settings.token_file)
            try:
                text = path.read_text(encoding="utf-8")
                self._mtime = path.stat().st_mtime
            except OSError as exc:
                raise AuthConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
        else:
            text = os.environ.get(settings.token_env, "")
            if not text:
                raise AuthConfigError(
                    f"no bearer token: set ${settings.token_env} or --token-file (or --no-auth on 127.0.0.1)"
                )
        token = text.strip()
        if len(token) < MIN_TOKEN_LENGTH:
            raise AuthConfigError(
                f"the token from {settings.token_source()} is shorter than {MIN_TOKEN_LENGTH} characters"
            )
        return token.encode()

    def _current(self) -> bytes:
        if self._settings.token_file:
            mtime: float | None
            try:
                mtime = Path(self._settings.token_file).stat().st_mtime
            except OSError:
                mtime = self._mtime
            if mtime != self._mtime:
                # keep the last good token while the Secret is being rewritten
                with self._lock, contextlib.suppress(AuthConfigError):
                    self._token = self._load()
        assert self._token is not None
        return self._token

    def check(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (constant-time comparison)."""
        if not self.enabled:
            return True
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self._current())
