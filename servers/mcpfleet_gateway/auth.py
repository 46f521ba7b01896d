"""Who is calling: JWTs (HS256, or RS256/ES256 against a JWKS URL), hashed static API keys, or nobody.

Every token is checked for signature, expiry, issuer and audience (a token minted for another audience
is refused). Keys from the JWKS URL are cached and fetched again when a token names an unknown key id
(at most once per ``jwks_min_refresh_seconds``, so forged key ids cannot make the gateway hammer the
identity provider). API keys are stored as SHA-256 hashes and compared in constant time. Anonymous
access exists only when the config says so. A refusal carries the ``WWW-Authenticate`` header of
RFC 6750 pointing at the protected-resource metadata (RFC 9728).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import jwt
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

SHA256_HEX = r"^[0-9a-f]{64}$"
TOKEN_CACHE_SECONDS = 60.0
TOKEN_CACHE_ENTRIES = 10_000


class ApiKey(BaseModel):
    """A bot's key: only its SHA-256 is stored (`mcpfleet` prints it for a new key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128, description="Who the key belongs to; the audit names it.")
    sha256: str = Field(pattern=SHA256_HEX, description="Hex SHA-256 of the key.")
    roles: tuple[str, ...] = Field(default=("viewer",), description="Roles the key grants.")
    revoked: bool = Field(default=False, description="A revoked key is refused (kept to name it in refusals).")


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str | None = Field(default=None, description="Required `iss` of every token.")
    audience: str | None = Field(default=None, description="Required `aud`: this gateway's resource identifier.")
    hs256_secret: SecretStr | None = Field(default=None, description="Shared secret for HS256 tokens.")
    jwks_url: str | None = Field(default=None, description="JWKS of the identity provider, for RS256/ES256.")
    algorithms: tuple[Literal["HS256", "RS256", "ES256"], ...] = ("RS256", "ES256")
    leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew tolerated on exp/nbf/iat.")
    jwks_cache_seconds: int = Field(default=600, ge=10, description="How long fetched keys are trusted.")
    jwks_min_refresh_seconds: int = Field(default=30, ge=1, description="Least time between two JWKS fetches.")
    roles_claim: str = Field(default="roles", description="Claim holding role names.")
    groups_claim: str = Field(default="groups", description="Claim holding group names (mapped to roles).")
    group_roles: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="Group name to roles.")
    api_keys: tuple[ApiKey, ...] = ()
    anonymous: bool = Field(default=False, description="Let calls without credentials in (as `anonymous_roles`).")
    anonymous_roles: tuple[str, ...] = ("viewer",)
    resource_metadata_url: str | None = Field(
        default=None, description="Where the RFC 9728 protected-resource metadata is served."
    )

    @model_validator(mode="after")
    def _a_way_to_check_tokens(self) -> AuthSettings:
        if "HS256" in self.algorithms and self.hs256_secret is None:
            raise ValueError("algorithms include HS256: set hs256_secret")
        if (self.jwks_url or self.hs256_secret) and not self.audience:
            raise ValueError("set audience: a token minted for another service must not be accepted")
        return self


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: tuple[str, ...]
    via: Literal["jwt", "api-key", "anonymous"]
    groups: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)


class Unauthenticated(Exception):
    """No acceptable credentials; `www_authenticate` is the header for the 401."""

    def __init__(self, reason: str, www_authenticate: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.www_authenticate = www_authenticate


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    def __init__(self, settings: AuthSettings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        # Verified tokens, so a client sending the same token on every call pays the signature check once.
        # An entry lives until the token's exp (never longer than TOKEN_CACHE_SECONDS) and the cache is bounded.
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def challenge(self, error: str | None = None, description: str | None = None) -> str:
        parts = ['Bearer realm="mcpfleet"']
        if self.settings.resource_metadata_url:
            parts.append(f'resource_metadata="{self.settings.resource_metadata_url}"')
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append('error_description="{}"'.format(description.replace('"', "'")))
        return ", ".join(parts)

    async def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal:
        if api_key:
            return self._by_api_key(api_key)
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise Unauthenticated(
                    "the Authorization header must be `Bearer <token>`", self.challenge("invalid_request")
                )
            return await self._by_token(credentials.strip())
        if self.settings.anonymous:
            return Principal("anonymous", self.settings.anonymous_roles, "anonymous")
        raise Unauthenticated("no credentials: send a bearer token or an API key", self.challenge())

    def _by_api_key(self, presented: str) -> Principal:
        digest = hash_api_key(presented)
        for key in self.settings.api_keys:
            if hmac.compare_digest(digest, key.sha256):
                if key.revoked:
                    raise Unauthenticated(f"API key {key.name!r} is revoked", self.challenge("invalid_token"))
                return Principal(key.name, key.roles, "api-key")
        raise Unauthenticated("unknown API key", self.challenge("invalid_token"))

    async def _by_token(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if cached[0] > time.time():
                return cached[1]
            del self._verified[token]
        principal = await self._verify(token)
        expires = float(principal.claims.get("exp", 0))
        self._verified[token] = (min(expires, time.time() + TOKEN_CACHE_SECONDS), principal)
        if len(self._verified) > TOKEN_CACHE_ENTRIES:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in settings.algorithms:
                raise Unauthenticated(
                    f"token algorithm {algorithm!r} is not accepted (accepted: {', '.join(settings.algorithms)})",
                    self.challenge("invalid_token", "algorithm not accepted"),
                )
            if algorithm != "HS256" and settings.jwks_url is None:
                raise Unauthenticated(
                    f"this gateway has no keys for {algorithm} tokens (its auth.jwks_url is not set)",
                    self.challenge("invalid_token", "no keys configured"),
                )
            key: Any
            if algorithm == "HS256":
                assert settings.hs256_secret is not None  # the settings validator requires it
                key = settings.hs256_secret.get_secret_value()
            else:
                key = await self._signing_key(header.get("kid"))
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "sub"] + (["iss"] if settings.issuer else [])},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", self.challenge("invalid_token", "expired")) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"the token is for another audience (expected {settings.audience})",
                self.challenge("invalid_token", "wrong audience"),
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"the token's issuer is not {settings.issuer}", self.challenge("invalid_token", "wrong issuer")
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature is invalid", self.challenge("invalid_token")) from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}", self.challenge("invalid_token")) from None
        groups = _names(claims.get(settings.groups_claim))
        roles = list(_names(claims.get(settings.roles_claim)))
        for group in groups:
            roles += [r for r in settings.group_roles.get(group, ()) if r not in roles]
        return Principal(str(claims["sub"]), tuple(roles), "jwt", groups, claims)

    async def _signing_key(self, kid: str | None) -> Any:
        keys = await self._jwks(force=False)
        found = _find(keys, kid)
        if found is None:
            # A new key id: the provider may have rotated its keys.
            keys = await self._jwks(force=True)
            found = _find(keys, kid)
        if found is None:
            raise Unauthenticated(f"no key {kid!r} in the identity provider's JWKS", self.challenge("invalid_token"))
        return found.key

    async def _jwks(self, *, force: bool) -> jwt.PyJWKSet:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            fresh = self._keys is not None and age < self.settings.jwks_cache_seconds
            throttled = self._keys is not None and age < self.settings.jwks_min_refresh_seconds
            if self._keys is not None and ((fresh and not force) or throttled):
                return self._keys
            assert self.settings.jwks_url is not None
            session = self._session or aiohttp.ClientSession()
            try:
                async with session.get(self.settings.jwks_url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    response.raise_for_status()
                    document = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if self._keys is not None:
                    return self._keys  # keep serving with the keys we have
                raise Unauthenticated(
                    f"the identity provider's keys could not be fetched ({exc})",
                    self.challenge("invalid_token", "keys unavailable"),
                ) from None
            finally:
                if self._session is None:
                    await session.close()
            self._keys = jwt.PyJWKSet.from_dict(document)
            self._fetched_at = time.monotonic()
            return self._keys


def _find(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
    if kid is None:
        return keys.keys[0] if len(keys.keys) == 1 else None
    return next((k for k in keys.keys if k.key_id == kid), None)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v for v in value.replace(",", " ").split() if v)
    if isinstance(value, Sequence):
        return tuple(str(v) for v in value)
    return ()
