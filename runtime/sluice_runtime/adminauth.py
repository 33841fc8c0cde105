"""Who may use the admin API: the holder of a bearer token, or anyone on loopback.

The admin API changes a stage's batching and SLO live, so on an address other pods can
reach it needs a token; the operator mounts one from a Secret as a file. The file is read
on every request, so a rotated Secret takes effect without a restart.
"""

from __future__ import annotations

import hmac
import ipaddress
from http import HTTPStatus
from pathlib import Path

from sluice_runtime.errors import StartupError

Refusal = tuple[HTTPStatus, str]


def is_loopback(host: str) -> bool:
    """True for loopback addresses (and ``localhost``), which only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume others can reach it
        return False


def read_token(path: Path) -> str:
    """The token in ``path``, without surrounding whitespace; StartupError if unusable."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise StartupError(f"admin token file {path}: cannot read it: {exc.strerror}") from None
    if not token:
        raise StartupError(f"admin token file {path} is empty")
    return token


class AdminAuth:
    """Decides each admin request; ``/metrics`` is not its business and stays open."""

    def __init__(self, token_file: Path | None, host: str) -> None:
        self._token_file = token_file
        self._host = host
        if token_file is not None:
            read_token(token_file)  # refuse to start with a token nobody can present

    @property
    def off(self) -> bool:
        """No token on an address others can reach: the admin API answers nobody."""
        return self._token_file is None and not is_loopback(self._host)

    def refusal(self, authorization: str | None) -> Refusal | None:
        """Why a request with this ``Authorization`` header is refused, or None if allowed."""
        if self._token_file is None:
            if not self.off:
                return None
            return (HTTPStatus.FORBIDDEN,
                    f"the admin API is off: this runtime listens on {self._host}, which is "
                    "not loopback, and was started without --admin-token-file")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return (HTTPStatus.UNAUTHORIZED,
                    "the admin API needs a bearer token: 'Authorization: Bearer <token>'")
        try:
            token = read_token(self._token_file)
        except StartupError as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, str(exc)
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return HTTPStatus.FORBIDDEN, "the bearer token is not this runtime's admin token"
        return None
