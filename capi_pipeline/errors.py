"""The exception tree, named by what the caller should do.

    CapiPipelineError
    ├── ConfigurationError        fix the pipeline YAML, flags or environment; exit code 2
    ├── InputError                fix the warehouse files; exit code 2
    │   └── ContractViolation     a table-level data-contract failure; nothing of the partition is sent
    └── DeliveryError             the Graph API did not take the events; exit code 1
        ├── TransientUploadError  retry later with the same event ids (5xx, codes 1/2, timeouts)
        │   └── ThrottledError    retry after backing off (codes 4, 17, 32, 613, 80000-80014)
        └── TerminalUploadError   stop now: token, permission or dataset problem (190, 10, 200-299, 100/33)

Row-level problems are not exceptions: they are rejections, counted and written to quarantine.
Messages carry ids (file, row number, column, rule, batch id, fbtrace_id), never customer values or tokens.
"""

from __future__ import annotations


class CapiPipelineError(Exception):
    """Base of every error this library raises on purpose."""

    exit_code: int = 1


class ConfigurationError(CapiPipelineError):
    """The pipeline definition, a flag or the environment is wrong: fix it and run again."""

    exit_code = 2


class InputError(CapiPipelineError):
    """A warehouse file cannot be used as it is: fix the file or the contract and run again."""

    exit_code = 2


class ContractViolation(InputError):
    """A table-level data-contract rule failed (missing column, wrong type, unreadable file)."""

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None,
                 rule: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.column = column
        self.rule = rule


class DeliveryError(CapiPipelineError):
    """Events were not delivered."""

    exit_code = 1

    def __init__(self, message: str, *, code: int | None = None, subcode: int | None = None,
                 fbtrace_id: str | None = None, batch_id: str | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.batch_id = batch_id
        self.http_status = http_status


class RunInProgressError(DeliveryError):
    """Another run is delivering the same partition's file right now: wait for it, then run again (exit 1; on
    Airflow the task's retries do the waiting)."""


class TransientUploadError(DeliveryError):
    """Retry later with the same event ids."""


class ThrottledError(TransientUploadError):
    """Meta asks us to slow down: back off, lower the concurrency, retry."""


class TerminalUploadError(DeliveryError):
    """Retrying cannot help: fix the token, permissions or dataset id."""


__all__ = [
    "CapiPipelineError",
    "ConfigurationError",
    "ContractViolation",
    "DeliveryError",
    "InputError",
    "RunInProgressError",
    "TerminalUploadError",
    "ThrottledError",
    "TransientUploadError",
]
