"""Redaction: no secret value survives, in text, in structures or in log records; ordinary text is untouched."""

from __future__ import annotations

import io
import json
import logging

import pytest

from mcpfleet_servers.base.redact import (
    REDACTED,
    RedactingFilter,
    install_log_redaction,
    is_secret_key,
    redact_text,
    redact_value,
)

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDp4In0."
    "c2lnbmF0dXJlLXBhcnQtZm9yLXRlc3Rpbmc"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAsecretkeymaterialQWERTY\nmoreSecretMaterial0987\n"
    "-----END RSA PRIVATE KEY-----"
)

# (text, the secret that must be gone)
POSITIVE = [
    ("Authorization: Bearer s3cr3tT0kenValue", "s3cr3tT0kenValue"),
    ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ('{"Authorization": "Bearer abcDEF123456"}', "abcDEF123456"),
    ("curl -H 'Authorization: token ghx9876543210'", "ghx9876543210"),
    ("sent bearer AbCdEf0123456789 to the API", "AbCdEf0123456789"),
    ("BEARER zz99yy88xx77", "zz99yy88xx77"),
    ("password=hunter2", "hunter2"),
    ("password: hunter2", "hunter2"),
    ('"password": "correct horse battery staple"', "correct horse battery staple"),
    ("pwd: p4ssw0rd!", "p4ssw0rd!"),
    ("DB_PASSWORD=Sup3rS3cret", "Sup3rS3cret"),
    ("passwd='quoted value'", "quoted value"),
    ("client_secret=cs-abcdef-123", "cs-abcdef-123"),
    ("api_key: AK-7788-9900", "AK-7788-9900"),
    ("x-api-key: 0123abcd", "0123abcd"),
    ("https://example.com/cb?access_token=tok123&state=xyz", "tok123"),
    ("refresh_token=rt.abc.def", "rt.abc.def"),
    ("postgres://app:s3cr3t@db:5432/app", "s3cr3t"),
    ("redis://default:redispass@redis.cache:6379/0", "redispass"),
    ("https://user:ghp-password@github.com/org/repo.git", "ghp-password"),
    (f"token {JWT}", JWT),
    (f"the service account token is {JWT}.", JWT),
    (f"jwt={JWT}", JWT),
    (PEM, "secretkeymaterialQWERTY"),
    (PEM, "moreSecretMaterial0987"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANtruncated", "MIIEvQIBADANtruncated"),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAbc\n-----END EC PRIVATE KEY-----", "MHcCAQEEIAbc"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("temporary key ASIAY34FZKBOKMUTVV7A in use", "ASIAY34FZKBOKMUTVV7A"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("using token 9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c", "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c"),
    ("api key AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"),
    ("    token: eyJhbGciOi.abc.def", "eyJhbGciOi.abc.def"),
    (
        "    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=",
        "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=",
    ),
    ("Cookie: session=abc123; theme=dark", "session=abc123"),
    ("set-cookie: sid=99887766; HttpOnly", "sid=99887766"),
    ("session_id=sess-4455", "sess-4455"),
    ("github token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("gitlab glpat-abcdefghijklmnopqrst12", "glpat-abcdefghijklmnopqrst12"),
    ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
    ("secret=topsecret", "topsecret"),
    ("private_key: MIIBOgIBAAJBAKj34", "MIIBOgIBAAJBAKj34"),
]

NEGATIVE = [
    "pod web-7d9f8c6b5-x2x9z is Running in namespace default",
    "deployment frontend scaled from 2 to 5 replicas",
    "The token bucket refilled; 3 tokens left",
    "Passwords must be rotated every 90 days",
    "secretName: tls-cert",
    "the bearer of this message",
    "Created Secret db-credentials in namespace payments",
    "sessionAffinity: ClientIP",
    "image: ghcr.io/mcpfleet/mcpfleet:0.1.0",
    "https://prometheus.monitoring:9090/api/v1/query?query=up",
    "http://web.default.svc.cluster.local:8080/healthz",
    "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
    "Invalid params: continue_token: not a continuation token this server issued",
    "pass continue_token for more",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
    "user alice logged in from 10.0.0.7",
    "max_tokens 4096, temperature 0.2",
    "no usable kubeconfig or in-cluster credentials: Invalid kube-config file.",
    "",
]


@pytest.mark.parametrize(("text", "secret"), POSITIVE)
def test_secret_is_removed_from_text(text: str, secret: str) -> None:
    result = redact_text(text)
    assert secret not in result
    assert REDACTED in result


@pytest.mark.parametrize("text", NEGATIVE)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_redaction_is_idempotent() -> None:
    for text, _ in POSITIVE:
        once = redact_text(text)
        assert redact_text(once) == once


def test_the_context_around_a_secret_stays() -> None:
    assert redact_text("Authorization: Bearer abc123xyz") == f"Authorization: Bearer {REDACTED}"
    assert redact_text("postgres://app:pw1@db/app") == f"postgres://app:{REDACTED}@db/app"
    assert redact_text('"password": "pw"') == f'"password": "{REDACTED}"'
    assert redact_text("PEM " + PEM).startswith("PEM -----BEGIN RSA PRIVATE KEY-----")


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "db_password",
        "adminPassword",
        "passwd",
        "secret",
        "clientSecret",
        "client_secret",
        "token",
        "accessToken",
        "refresh-token",
        "id_token",
        "apiKey",
        "api_key",
        "X-Api-Key",
        "authorization",
        "Proxy-Authorization",
        "cookie",
        "Set-Cookie",
        "session",
        "sessionId",
        "credentials",
        "private_key",
        "privateKey",
        "ssh-privatekey",
        "client-key-data",
        "tls.key",
        "aws_secret_access_key",
        "imagePullSecrets",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "name",
        "secretName",
        "secretRef",
        "passwordFile",
        "tokenPath",
        "client-certificate-data",
        "certificate-authority-data",
        "sessionAffinity",
        "continue_token",
        "continue",
        "keyName",
        "kind",
        "namespace",
        "tokenTTL",
        "author",
        "monkey",
        "description",
    ],
)
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [
        {"name": "prod", "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority-data": "Q0FEQVRB"}}
    ],
    "users": [
        {
            "name": "admin",
            "user": {
                "token": "kube-token-123",
                "client-certificate-data": "Q0VSVERBVEE=",
                "client-key-data": "S0VZREFUQQ==",
                "username": "admin",
                "password": "kube-pass",
            },
        }
    ],
}


def test_kubeconfig_secrets_go_certificates_and_names_stay() -> None:
    result = redact_value(KUBECONFIG)
    user = result["users"][0]["user"]
    assert user["token"] == user["client-key-data"] == user["password"] == REDACTED
    assert user["client-certificate-data"] == "Q0VSVERBVEE="
    assert user["username"] == "admin"
    assert result["clusters"] == KUBECONFIG["clusters"]
    dumped = json.dumps(result)
    for secret in ("kube-token-123", "S0VZREFUQQ==", "kube-pass"):
        assert secret not in dumped


def test_kubernetes_secret_object_data_goes() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "payments"},
        "type": "Opaque",
        "data": {"url": "cG9zdGdyZXM=", "user": "YXBw"},
        "stringData": {"note": "plain"},
    }
    result = redact_value(secret)
    assert result["data"] == {"url": REDACTED, "user": REDACTED}
    assert result["stringData"] == {"note": REDACTED}
    assert result["metadata"] == {"name": "db", "namespace": "payments"}
    # a ConfigMap's data is not secret
    config_map = {**secret, "kind": "ConfigMap"}
    assert redact_value(config_map)["data"] == secret["data"]


def test_structures_keep_their_shape_and_types() -> None:
    value = {
        "replicas": 3,
        "ready": True,
        "token": "abc",
        "tokenSecret": {"name": "grafana", "key": "token", "value": "leaked"},
        "imagePullSecrets": [{"name": "regcred"}],
        "passwords": ["one", "two"],
        "automountServiceAccountToken": False,
        "env": [{"name": "DB_URL", "value": "postgres://u:pw@db/x"}, {"name": "LEVEL", "value": "debug"}],
        "nested": [[{"apiKey": "k1"}]],
        "empty_token": "",
        "count": None,
    }
    result = redact_value(value)
    assert result == {
        "replicas": 3,
        "ready": True,
        "token": REDACTED,
        "tokenSecret": {"name": "grafana", "key": "token", "value": REDACTED},
        "imagePullSecrets": [{"name": "regcred"}],
        "passwords": [REDACTED, REDACTED],
        "automountServiceAccountToken": False,
        "env": [{"name": "DB_URL", "value": f"postgres://u:{REDACTED}@db/x"}, {"name": "LEVEL", "value": "debug"}],
        "nested": [[{"apiKey": REDACTED}]],
        "empty_token": "",
        "count": None,
    }
    assert value["token"] == "abc", "the input is not modified"


def test_no_secret_of_the_corpus_survives_inside_structures() -> None:
    document = {"events": [{"message": text} for text, _ in POSITIVE], "title": "ordinary"}
    dumped = json.dumps(redact_value(document))
    for _, secret in POSITIVE:
        assert secret not in dumped
    assert '"title": "ordinary"' in dumped


def _logger_with_redaction() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_log_redaction(handler)
    logger = logging.getLogger("tests.redact")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_log_records_are_redacted_message_args_and_traceback() -> None:
    logger, stream = _logger_with_redaction()
    logger.info("connecting with password=%s to %s", "hunter2", "db")
    logger.warning("header %r", {"Authorization": f"Bearer {JWT}"})
    try:
        raise RuntimeError("failed with token=tok-999")
    except RuntimeError:
        logger.exception("boom")
    output = stream.getvalue()
    for secret in ("hunter2", JWT, "tok-999"):
        assert secret not in output
    assert "to db" in output
    assert "RuntimeError" in output


def test_the_filter_is_installed_once() -> None:
    handler = logging.StreamHandler(io.StringIO())
    install_log_redaction(handler)
    install_log_redaction(handler)
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1


def test_a_record_whose_arguments_do_not_fit_passes() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert RedactingFilter().filter(record)
