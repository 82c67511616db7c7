"""Error types shared by services; APIs map them to 4xx responses with the message as detail."""


class RoadsegError(Exception):
    """Base class: a problem the user can fix (bad input, missing thing). Maps to HTTP 4xx."""

    status_code = 400


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
