"""Who a request comes from (:class:`Identity`) and the roles an identity may hold (:class:`Role`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal


class Role(IntEnum):
    """Roles in increasing power; a route needing ``labeler`` admits ``operator`` and ``admin`` too."""

    viewer = 1
    labeler = 2
    operator = 3
    admin = 4


#: How an identity was established (``session``: an API key kept in the browser's cookie after /login).
Via = Literal["api-key", "session", "iap", "open-local"]
#: A role by name, as the API shows it.
RoleName = Literal["viewer", "labeler", "operator", "admin"]


@dataclass(frozen=True)
class Identity:
    """Who made a request: an API key's name, an IAP e-mail, or ``local`` in open local mode."""

    name: str
    role: Role
    via: Via

    def reviewer(self, form_name: str | None = None) -> str:
        """Who a review decision is recorded under.

        This identity's name; only in open local mode, where nobody logs in, the form's name (or ``local``).
        """
        return (form_name or "local") if self.via == "open-local" else self.name
