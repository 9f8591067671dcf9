"""The one exception the client raises for anything the service (or the way to it)
refused, and the bridge's conversion errors."""

from __future__ import annotations

from typing import Any

import httpx

from .models import FieldError

# Codes the client sets itself, for failures that have no API error body.
CONNECTION_FAILED = "connection_failed"
"""The service could not be reached, or the connection broke (``status`` is None)."""
UNEXPECTED_RESPONSE = "unexpected_response"
"""An answer that is not the API's (a proxy's error page, a body that is not JSON)."""
TIMEOUT = "timeout"
"""``Run.wait`` ran past its ``timeout`` (``status`` is None)."""

# API codes after which trying again later can succeed.
RETRYABLE_CODES = frozenset({"busy", "unavailable", CONNECTION_FAILED})


class ThemisError(Exception):
    """An error answer of the service: its HTTP ``status``, the API's ``code``,
    ``message`` and ``details`` (``FieldError`` entries naming each problem's path)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: list[FieldError] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.details = details or []
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"{self.status} {self.code}" if self.status else self.code
        lines = [f"{head}: {self.message}"]
        lines += [f"  {d.path or '(body)'}: {d.message}" for d in self.details]
        return "\n".join(lines)

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    @property
    def run_ids(self) -> list[str]:
        """The runs a ``conflict`` names as in the way (unfinished, derived from the
        run to delete, or using the revision to delete): ``details`` at ``runs[i]``."""
        return [d.message for d in self.details if d.path.startswith("runs[")]

    @classmethod
    def from_response(cls, response: httpx.Response) -> ThemisError:
        """The error of a non-2xx answer (its body must have been read)."""
        retry_after = _seconds(response.headers.get("retry-after"))
        try:
            error: Any = response.json()["error"]
            details = [FieldError.model_validate(d) for d in error.get("details", [])]
            return cls(
                str(error["code"]),
                str(error["message"]),
                status=response.status_code,
                details=details,
                retry_after=retry_after,
            )
        except (ValueError, KeyError, TypeError):
            text = response.text[:200]
            return cls(
                UNEXPECTED_RESPONSE,
                f"HTTP {response.status_code} without the API's error body: {text!r}",
                status=response.status_code,
                retry_after=retry_after,
            )

    @classmethod
    def from_transport(cls, error: httpx.TransportError) -> ThemisError:
        return cls(CONNECTION_FAILED, f"{type(error).__name__}: {error}")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class UnmappableExperimentError(ValueError):
    """A framework ``Experiment`` uses something the service cannot run; ``problems``
    lists every one (a path into the experiment and why)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            "this experiment cannot run on the Themis service:\n"
            + "\n".join(f"  {path}: {why}" for path, why in problems)
        )


class UnmappedSettingWarning(UserWarning):
    """A framework setting the service has no counterpart for; the run goes ahead
    without it (the warning names it)."""
