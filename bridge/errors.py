"""The bridge's one exception hierarchy.

Every expected failure is a :class:`BridgeError`. Each kind carries the exit code a hook or
the CLI returns (sysexits.h values, so Slurm's log and an admin's shell see a meaningful
number), and :func:`bridge.hooks.run_hook` / the CLI turn it into one line on stderr.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of all expected failures."""

    exit_code = 70  # EX_SOFTWARE
    kind = "error"


class UsageError(BridgeError):
    """Bad arguments: a malformed hostlist, a missing argument."""

    exit_code = 64  # EX_USAGE
    kind = "usage"


class ConfigError(BridgeError):
    """The config file is missing, unreadable or invalid, or names no nodeset for a node."""

    exit_code = 78  # EX_CONFIG
    kind = "config"


class TemplateError(BridgeError):
    """A pod template failed to render, parse or validate."""

    exit_code = 65  # EX_DATAERR
    kind = "template"


class ResumeFileError(BridgeError):
    """$SLURM_RESUME_FILE is unreadable or not in a format Slurm writes."""

    exit_code = 65  # EX_DATAERR
    kind = "resume-file"


class ResumeFileGone(ResumeFileError):
    """$SLURM_RESUME_FILE cannot be opened (gone, or refused): the slurmctld that called the hook
    died before the hook could read it (the file is a memfd of that process). What it said can
    be asked of the restarted slurmctld."""


class NotInstalled(BridgeError):
    """An optional part of the bridge is not installed (e.g. the ``[check]`` extra)."""

    exit_code = 69  # EX_UNAVAILABLE: "a support program or file does not exist"
    kind = "install"


class SlurmError(BridgeError):
    """A Slurm command failed or answered something we cannot read."""

    exit_code = 69  # EX_UNAVAILABLE
    kind = "slurm"


class UnknownNode(SlurmError):
    """Slurm does not know a node the bridge was asked about (a hand-typed name)."""

    exit_code = 68  # EX_NOHOST


class KubernetesError(BridgeError):
    """The Kubernetes API refused a call or could not be reached.

    ``transient`` says whether the same call may succeed later (no capacity, throttling,
    timeouts, 5xx): resume failures of that kind power nodes back down for another try,
    permanent ones (forbidden, invalid) leave them DOWN for an admin.
    """

    exit_code = 69  # EX_UNAVAILABLE
    kind = "kubernetes"

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None,
                 transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after
        """Seconds the server asked us to wait before trying again (429/503 ``Retry-After``)."""


class KubernetesUnavailable(KubernetesError):
    """The API server could not be reached at all (connection refused, DNS, TLS, timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


class NotFound(KubernetesError):
    """404 with the server's Status: the object (or its namespace) does not exist."""


class Conflict(KubernetesError):
    """409: the object already exists, or changed since it was read."""


class Forbidden(KubernetesError):
    """401/403: the kubeconfig's identity or its Role must change."""

    exit_code = 77  # EX_NOPERM


class NotServed(KubernetesError):
    """The API server does not serve this group/version at all (a plain-text 404, not a
    Status): the CRD or the add-on that brings it (Volcano, scheduler-plugins) is not installed."""

    def __init__(self, message: str, *, api_version: str) -> None:
        super().__init__(message, code=404, reason="NotServed")
        self.api_version = api_version


class CredentialsError(KubernetesError):
    """The kubeconfig user's credentials failed as a request was sent (a credential plugin that
    fails, cannot run or prints no token; a token file missing or unreadable): a config error
    for an admin, never retried. A :class:`KubernetesError`, so every handler of a failed
    call covers it (a suspend owes its pods, a release deletes what it created)."""

    exit_code = 78  # EX_CONFIG
    kind = "config"


class PartialFailure(BridgeError):
    """Some nodes of a hook call failed; they were marked in Slurm, the others went ahead."""

    exit_code = 75  # EX_TEMPFAIL
    kind = "partial"

    def __init__(self, message: str, *, failed: dict[str, str], exit_code: int | None = None) -> None:
        super().__init__(message)
        self.failed = failed
        if exit_code is not None:
            self.exit_code = exit_code  # every node failed for one kind of reason: say which
