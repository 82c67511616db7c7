"""A stand-in for Identity-Aware Proxy's signing key: a P-256 key made here, published as a JWK set file.

Services verify assertions signed with it exactly as they verify IAP's (ROADSEG_IAP_KEYS_FILE points at
the published set), so tests exercise the real verification path, not a mock of it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from roadseg.auth import IAP_ISSUER

AUDIENCE = "/projects/123/global/backendServices/456"


class TestIssuer:
    """Signs IAP-style assertions (ES256, key id ``k1``) and publishes its public key."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path):
        self.private = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.keys_file = folder / "iap-keys.json"
        self.keys_file.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256"}]}))

    def env(self, roles: dict[str, str]) -> dict[str, str]:
        """ROADSEG_* settings that trust this issuer, with ``roles`` (e-mail or @domain -> role)."""
        return {
            "ROADSEG_AUTH_MODE": "required",
            "ROADSEG_IAP_AUDIENCE": AUDIENCE,
            "ROADSEG_IAP_KEYS_FILE": str(self.keys_file),
            "ROADSEG_IAP_ROLES": json.dumps(roles),
        }

    def assertion(self, email: str = "ana@example.com", **claims) -> str:
        """A valid assertion for ``email``; ``claims`` override any claim (to make it expired, misaddressed...)."""
        now = int(time.time())
        body = {"iss": IAP_ISSUER, "aud": AUDIENCE, "email": email, "sub": "accounts.google.com:1"}
        body |= {"iat": now, "exp": now + 600} | claims
        return jwt.encode(body, self.private, algorithm="ES256", headers={"kid": "k1"})
