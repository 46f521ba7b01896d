"""Secrets never leave a server: every tool result, error message and log record passes through here.

Two mechanisms: values under keys that name a secret (``password``, ``token``, ``client-key-data``…)
are replaced whole, and free text is scanned for the shapes secrets take (bearer tokens, JWTs, PEM
private keys, ``user:pass@`` URLs, AWS keys, ``password=…``). Certificates are public and stay.
References to secrets (``secretName``, ``secretRef.name``) are names, not secrets, and stay too.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Keys are compared after lower-casing and dropping "-", "_", "." and spaces.
_SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "session",
        "sessionid",
        "sessionkey",
        "credential",
        "credentials",
        "privatekey",
        "clientkeydata",
        "clientsecret",
        "tlskey",
        "jwt",
        "dsn",
        "connectionstring",
    }
)
_SECRET_SUFFIXES = (
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "secret",
    "secrets",
    "token",
    "tokens",
    "apikey",
    "privatekey",
    "credential",
    "credentials",
    "keydata",
    "cookie",
    "cookies",
    "sessionid",
    "secretkey",
    "accesskey",
)
# Token-ish names that hold no credential: continuation tokens are ours and opaque, the rest name or count.
_NOT_SECRET_KEYS = frozenset({"continuetoken", "continue", "nexttoken", "pagetoken", "nextpagetoken", "resumetoken"})
_NOT_SECRET_SUFFIXES = ("name", "names", "ref", "refs", "path", "file", "ttl", "seconds", "count", "type", "kind")
# Inside a secret-keyed mapping these still name things rather than hold them (a SecretKeyRef).
_REFERENCE_KEYS = frozenset({"name", "namespace", "key", "kind", "apiversion", "optional", "mountpath", "path", "type"})


# Answers repeat the same few hundred keys thousands of times: both lookups are cached.
@functools.lru_cache(maxsize=4096)
def _normal(key: str) -> str:
    return re.sub(r"[-_. ]", "", key).lower()


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True for keys whose values are secrets (``apiKey``, ``client-key-data``), not for references (``secretName``)."""
    normal = _normal(key)
    if normal in _NOT_SECRET_KEYS or normal.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return normal in _SECRET_KEYS or normal.endswith(_SECRET_SUFFIXES)


# ------------------------------------------------------------------ free text

_TOKEN_CHARS = r"[A-Za-z0-9\-._~+/]"
_TEXT_KEYS = (
    r"password|passwd|pwd|passphrase|secret|client[_-]?secret|token|access[_-]?token|refresh[_-]?token|"
    r"id[_-]?token|auth[_-]?token|api[_-]?key|x-api-key|client-key-data|session[_-]?id|private[_-]?key|"
    r"secret[_-]?access[_-]?key|access[_-]?key|secret[_-]?key"
)


def _keep_group(group: int) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group(group) + REDACTED

    return replace


def _quoted_value(match: re.Match[str]) -> str:
    if _normal(match.group("key")) in _NOT_SECRET_KEYS:
        return match.group(0)
    value = match.group("value")
    quote = value[0] if value[:1] in "\"'" and len(value) > 1 and value[-1] == value[0] else ""
    return f"{match.group('head')}{quote}{REDACTED}{quote}"


_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # PEM private keys, also when the END line was cut off.
    (
        re.compile(
            r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*\Z)",
            re.DOTALL,
        ),
        lambda m: f"{m.group(1)}{REDACTED}-----END PRIVATE KEY-----",
    ),
    # HTTP headers that carry credentials whole.
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|negotiate|aws4-hmac-sha256)\s+)?)"
            r"[^\s\"',;]+"
        ),
        _keep_group(1),
    ),
    (re.compile(r"(?im)^(\s*(?:set-)?cookie\s*:\s*).+$"), _keep_group(1)),
    (re.compile(rf"((?i:bearer)\s+)(?={_TOKEN_CHARS}*\d){_TOKEN_CHARS}{{6,}}=*"), _keep_group(1)),
    # user:password@ in URLs (the user stays: it is a name).
    (re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), lambda m: f"{m.group(1)}{REDACTED}@"),
    # JWTs: three base64url segments, the first a JSON header.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Cloud and forge keys with well-known shapes.
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"), REDACTED),
    # key=value, key: value, "key": "value" (JSON, YAML, query strings, kubeconfig lines).
    (
        re.compile(
            rf"(?i)(?P<head>(?<![A-Za-z0-9])(?P<key>(?:[A-Za-z0-9]+[_-])*(?:{_TEXT_KEYS}))[\"']?\s*[:=]\s*)"
            r"(?P<value>\[REDACTED\]|\"[^\"\n]*\"|'[^'\n]*'|[^\s,;&\"'}\]]+)"
        ),
        _quoted_value,
    ),
    # A long token right after a token-ish word ("using token 9f8e...", "api key AbC...").
    (
        re.compile(
            r"(?i)\b((?:token|secret|api[ _-]?key|password|credential|signature)\s+(?:is\s+|of\s+)?)"
            r"(?:[A-Fa-f0-9]{32,}|[A-Za-z0-9+/_-]{32,}={0,2})(?![A-Za-z0-9+/_=-])"
        ),
        _keep_group(1),
    ),
)


# Every pattern above needs one of these substrings (compared case-insensitively, so a superset): text
# without any of them cannot match, and most strings in an answer (names, phases, times) skip the scan.
_TRIGGER = re.compile(
    r"(?i)private key|authorization|cookie|bearer|://|eyJ|AKIA|ASIA|gh[pousr]_|glpat-|xox[abposr]-"
    r"|pass|pwd|secret|token|key|session|credential|signature"
)


def redact_text(text: str) -> str:
    """The text with every secret-shaped substring replaced by [REDACTED]; ordinary text is unchanged."""
    if not text or _TRIGGER.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------- structures


def _redact_all_strings(value: Any) -> Any:
    """Under a secret key: every string goes, except the fields that reference a secret by name."""
    if isinstance(value, str | bytes):
        return REDACTED if value else value
    if isinstance(value, Mapping):
        return {
            k: (_redact_all_strings(v) if _normal(str(k)) not in _REFERENCE_KEYS else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_all_strings(v) for v in value]
    # Numbers, booleans and null carry no secret worth the broken schema a string would cause.
    return value


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value with secrets removed; the shape (and the types of non-secrets) kept."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        is_k8s_secret = value.get("kind") == "Secret"
        result: dict[Any, Any] = {}
        for key, item in value.items():
            if is_secret_key(str(key)):
                result[key] = _redact_all_strings(item)
            elif is_k8s_secret and key in ("data", "stringData") and isinstance(item, Mapping):
                result[key] = dict.fromkeys(item, REDACTED)
            else:
                result[key] = redact_value(item)
        return result
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


# ------------------------------------------------------------------- logging


class RedactingFilter(logging.Filter):
    """Rewrites every record passing a handler: message, arguments and traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose args do not fit its format: leave it to the formatter to report
            return True
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_log_redaction(*targets: logging.Handler | logging.Logger) -> RedactingFilter:
    """Add one RedactingFilter to handlers (which see records from every logger) or loggers."""
    log_filter = RedactingFilter()
    for target in targets:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(log_filter)
    return log_filter
