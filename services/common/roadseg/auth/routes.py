"""``/api/v1/auth``: who the caller is (``/me``) and the configured API keys (``/keys``, admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from roadseg.auth.access import CallerDep, require
from roadseg.auth.identity import Role, RoleName, Via
from roadseg.auth.keys import keyring
from roadseg.config import get_settings


class WhoAmI(BaseModel):
    """The caller as this service sees it."""

    name: str = Field(description="API key name, IAP e-mail, or ``local`` in open local mode.")
    role: RoleName
    via: Via


class KeyInfo(BaseModel):
    """A configured API key (never the key or its hash)."""

    name: str
    role: RoleName
    revoked: bool


router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.get("/me", response_model=WhoAmI, dependencies=[require(Role.viewer)])
def who_am_i(identity: CallerDep) -> dict[str, str]:
    """Who this service takes the caller for, and with which role."""
    return {"name": identity.name, "role": identity.role.name, "via": identity.via}


@router.get("/keys", response_model=list[KeyInfo], dependencies=[require(Role.admin)])
def list_keys() -> list[dict[str, Any]]:
    """The configured API keys: name, role, revoked (admin)."""
    settings = get_settings()
    keys = keyring(settings).keys()
    return [{"name": k.name, "role": k.role.name, "revoked": k.revoked} for k in keys]
