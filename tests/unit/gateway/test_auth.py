"""The gateway's authentication matrix: valid, expired, wrong audience, wrong issuer, bad signature, missing,
revoked key, anonymous only when configured; RS256/ES256 keys from a JWKS URL served on loopback, with rotation.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mcpfleet_gateway.auth import ApiKey, Authenticator, AuthSettings, Unauthenticated, hash_api_key

ISSUER = "https://idp.example"
AUDIENCE = "https://gateway.example/mcp"
SECRET = "a-long-shared-secret-for-hs256-tests"
OTHER_SECRET = "another-secret-of-sufficient-length!"
META = "https://gateway.example/.well-known/oauth-protected-resource"


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300, "roles": ["operator"]}
    return base | overrides


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


@pytest.fixture
def hs_auth() -> Authenticator:
    return Authenticator(
        AuthSettings(
            issuer=ISSUER,
            audience=AUDIENCE,
            hs256_secret=SECRET,
            algorithms=("HS256",),
            group_roles={"sre": ("admin",)},
            api_keys=(
                ApiKey(name="ci-bot", sha256=hash_api_key("key-1"), roles=("operator",)),
                ApiKey(name="old-bot", sha256=hash_api_key("key-2"), revoked=True),
            ),
            resource_metadata_url=META,
        )
    )


async def test_a_valid_token_gives_its_subject_and_roles_with_group_roles(hs_auth: Authenticator) -> None:
    principal = await hs_auth.authenticate(f"Bearer {hs256(groups=['sre'])}")
    assert (principal.subject, principal.roles, principal.via) == ("alice", ("operator", "admin"), "jwt")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: hs256(exp=int(time.time()) - 600), "the token has expired"),
        (lambda: hs256(aud="https://other.example"), f"the token is for another audience (expected {AUDIENCE})"),
        (lambda: hs256(iss="https://evil.example"), f"the token's issuer is not {ISSUER}"),
        (
            lambda: jwt.encode(claims(), "another-secret-of-sufficient-length!", algorithm="HS256"),
            "signature is invalid",
        ),
        (lambda: jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET, algorithm="HS256"), "exp"),
        (lambda: "not.a.jwt", "invalid token"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "wrong-signature", "no-expiry", "garbage"],
)
async def test_bad_tokens_are_refused_with_a_challenge(hs_auth: Authenticator, token: Any, reason: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await hs_auth.authenticate(f"Bearer {token()}")
    assert reason in caught.value.reason
    assert caught.value.www_authenticate.startswith('Bearer realm="mcpfleet"')
    assert f'resource_metadata="{META}"' in caught.value.www_authenticate
    assert 'error="invalid_token"' in caught.value.www_authenticate


async def test_missing_credentials_and_anonymous_access(hs_auth: Authenticator) -> None:
    with pytest.raises(Unauthenticated, match="no credentials"):
        await hs_auth.authenticate(None)
    with pytest.raises(Unauthenticated, match="Bearer <token>"):
        await hs_auth.authenticate("Basic dXNlcjpwYXNz")
    anonymous = Authenticator(AuthSettings(anonymous=True, algorithms=("HS256",), hs256_secret=SECRET, audience="x"))
    assert (await anonymous.authenticate(None)).via == "anonymous"


async def test_api_keys_known_unknown_and_revoked(hs_auth: Authenticator) -> None:
    principal = await hs_auth.authenticate(None, api_key="key-1")
    assert (principal.subject, principal.roles, principal.via) == ("ci-bot", ("operator",), "api-key")
    with pytest.raises(Unauthenticated, match="revoked"):
        await hs_auth.authenticate(None, api_key="key-2")
    with pytest.raises(Unauthenticated, match="unknown API key"):
        await hs_auth.authenticate(None, api_key="key-3")


def test_settings_refuse_a_token_check_without_an_audience() -> None:
    with pytest.raises(ValueError, match="set audience"):
        AuthSettings(hs256_secret=SECRET, algorithms=("HS256",))
    with pytest.raises(ValueError, match="set hs256_secret"):
        AuthSettings(audience="x", algorithms=("HS256",))


class Idp:
    """An identity provider's JWKS endpoint on loopback; `keys` can be rotated and fetches are counted."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.jwks: list[dict[str, Any]] = [
            RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True) | {"kid": "rsa-1", "alg": "RS256", "use": "sig"},
            ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True) | {"kid": "ec-1", "alg": "ES256", "use": "sig"},
        ]
        self.fetches = 0
        self.url = ""

    async def handler(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.fetches += 1
        return aiohttp.web.json_response({"keys": self.jwks})

    def token(self, kid: str, **overrides: Any) -> str:
        if kid.startswith("ec"):
            return jwt.encode(claims(**overrides), self.ec, algorithm="ES256", headers={"kid": kid})
        return jwt.encode(claims(**overrides), self.rsa, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    provider = Idp()
    app = aiohttp.web.Application()
    app.router.add_get("/jwks", provider.handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider.url = f"http://127.0.0.1:{port}/jwks"
    yield provider
    await runner.cleanup()


async def test_rs256_and_es256_tokens_are_checked_against_the_jwks_which_is_cached(idp: Idp) -> None:
    auth = Authenticator(AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=idp.url, jwks_min_refresh_seconds=1))
    assert (await auth.authenticate(f"Bearer {idp.token('rsa-1')}")).subject == "alice"
    assert (await auth.authenticate(f"Bearer {idp.token('ec-1', sub='bob')}")).subject == "bob"
    assert idp.fetches == 1
    with pytest.raises(Unauthenticated, match="another audience"):
        await auth.authenticate(f"Bearer {idp.token('rsa-1', aud='https://other.example')}")


async def test_a_rotated_key_is_fetched_once_and_forged_key_ids_do_not_hammer_the_provider(idp: Idp) -> None:
    auth = Authenticator(AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=idp.url, jwks_min_refresh_seconds=60))
    await auth.authenticate(f"Bearer {idp.token('rsa-1')}")
    idp.jwks[0] = idp.jwks[0] | {"kid": "rsa-2"}
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="no key 'rsa-2'"):
            # Within the minimum refresh interval the old set is kept: a flood of unknown kids costs no fetches.
            await auth.authenticate(f"Bearer {idp.token('rsa-2')}")
    assert idp.fetches == 1
    fresh = Authenticator(AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=idp.url, jwks_min_refresh_seconds=1))
    assert (await fresh.authenticate(f"Bearer {idp.token('rsa-2')}")).subject == "alice"


async def test_an_unreachable_jwks_url_is_a_clear_refusal() -> None:
    auth = Authenticator(AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://127.0.0.1:9/jwks"))
    token = jwt.encode(claims(), rsa.generate_private_key(65537, 2048), algorithm="RS256", headers={"kid": "k"})
    with pytest.raises(Unauthenticated, match="keys could not be fetched"):
        await auth.authenticate(f"Bearer {token}")
