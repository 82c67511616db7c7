"""Error types shared by services; APIs map them to 4xx responses with the message as detail."""


class RoadsegError(Exception):
    """Base class: a problem the user can fix (bad input, missing thing). Maps to HTTP 4xx."""

    status_code = 400
    #: Extra HTTP headers of the answer (WWW-Authenticate, Retry-After).
    headers: dict[str, str] | None = None


class InvalidInput(RoadsegError):
    """Corrupt, truncated, wrongly formatted or otherwise unusable input."""

    status_code = 400


class TooLarge(RoadsegError):
    """Input exceeds a configured size limit (bytes or pixels)."""

    status_code = 413


class NotFound(RoadsegError):
    """A scene, tile, prediction or model that does not exist."""

    status_code = 404


class MissingFile(NotFound, FileNotFoundError):
    """A local file, folder or dataset split that is not there (still a FileNotFoundError for callers)."""


class UnsafeName(InvalidInput):
    """A file name or storage key that tries to escape its folder."""


class QueueUnavailable(RoadsegError):
    """The task queue (Celery broker) cannot be reached: the work was not queued; try again later."""

    status_code = 503


class Unauthenticated(RoadsegError):
    """No credentials, or credentials that do not check out (unknown, revoked or expired)."""

    status_code = 401
    headers = {"WWW-Authenticate": 'Bearer realm="roadseg"'}


class SessionsUnavailable(RoadsegError):
    """Browser sign-in sessions live in Redis, which cannot be reached: try again later."""

    status_code = 503
    headers = {"Retry-After": "30"}


class PredictionBudgetSpent(RoadsegError):
    """An identity's queued predictions already hold ``ROADSEG_QUEUED_PREDICT_PIXELS``: wait for them to finish."""

    status_code = 429
    headers = {"Retry-After": "30"}


class Forbidden(RoadsegError):
    """A known identity without the role the route needs (or a remote client in open local mode)."""

    status_code = 403


class StorageFull(RoadsegError):
    """The storage's disk is full (or over quota): nothing was written; free space, then submit again."""

    status_code = 507


class Overloaded(RoadsegError):
    """A task queue is deeper than ``ROADSEG_MAX_QUEUED_TASKS``: nothing was accepted; retry after a while."""

    status_code = 503
    headers = {"Retry-After": "30"}


class RateLimited(RoadsegError):
    """One identity sent more than ``ROADSEG_RATE_LIMIT_PER_MINUTE`` requests this minute."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        """``retry_after``: seconds until the next minute starts."""
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}
