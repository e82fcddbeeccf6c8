"""The one credential scrubber: everything the project writes (manifests, rejections, records' provenance,
error details, log lines) goes through these functions, so there is one idea of what a secret looks like.

Three tools, for three kinds of text:

* :func:`redact_url` for an endpoint URL we were given: the URL stays recognisable (scheme, host,
  port, path, the names of its query parameters) but loses its user:password and every query value
  except a few that are known not to be secrets (``api-version``).
* :func:`looks_secret` / :func:`scrub_config` for configuration written to disk: keys that name a
  credential and values that look like one are dropped.
* :func:`redactor` / :class:`LogScrubber` for free text (a server's error body, an exception from an
  HTTP library, a debug log line) that may echo the secrets we hold: those exact strings are replaced,
  and any URL in the text is put through :func:`redact_url`.

Why redact *all* query values rather than those with secret-looking names: gateways name their
secrets freely (Azure Functions ``code``, storage SAS ``sig``/``se``, AWS ``X-Amz-Credential``,
a proxy's ``k``), so a deny-list leaks the one nobody thought of; an allow-list fails closed. A query
value is never what identifies an endpoint, except ``api-version``, which is kept because it matters
for reproducing a run and is public by design.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"

PUBLIC_QUERY_KEYS = frozenset({"api-version", "api_version"})
"""Query parameters whose values are kept by :func:`redact_url` (public, and needed to reproduce a run)."""

_SECRET_PARTS = {"token", "secret", "password", "passwd", "pwd", "credential", "credentials", "apikey",
                 "auth", "authorization", "bearer", "cookie", "sig", "signature"}
_SECRET_PAIRS = {("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key")}
_KEY_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

SECRET_VALUE = re.compile(
    r"sk-[A-Za-z0-9_-]{8,}"  # OpenAI-style keys
    r"|hf_[A-Za-z0-9]{16,}"  # Hugging Face tokens
    r"|Bearer\s"
    r"|://[^/\s]*:[^/\s]*@"  # user:password@host
    # a query/assignment whose name says credential and whose value is not already REDACTED
    r"|(?:^|[?&;\s])[\w.-]*(?:key|token|sig|signature|secret|passw(?:or)?d|pwd|credential|auth|code)[\w.-]*"
    r"=(?!" + REDACTED + r"(?![\w-]))[^\s&;#]",
    re.IGNORECASE,
)
"""What a credential looks like inside a string value. The only such regex in the project
(:mod:`openie4pp.schema` and :mod:`openie4pp.shards` use it)."""

_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)
_QUERY_IN_TEXT = re.compile(r"([?&])([\w.~%+-]+)=([^\s&#\"'<>]*)")


def redact_url(url: str) -> str:
    """``url`` without user:password, fragment and query values (``REDACTED``, except the public
    :data:`PUBLIC_QUERY_KEYS`). Text that is not a URL with a host is returned unchanged."""
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, an unbalanced [ipv6]: not a URL we can keep
        return REDACTED if "@" in url or "?" in url else url
    if not parts.scheme or not hostname:
        return url
    host = f"[{hostname}]" if ":" in hostname else hostname
    netloc = host if port is None else f"{host}:{port}"
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(key, value if key.lower() in PUBLIC_QUERY_KEYS else REDACTED)
                           for key, value in pairs], quote_via=quote, safe="")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The strings of ``url`` that :func:`redact_url` removes (password, query values), raw and
    percent-decoded: what a server's error text or a library's message may echo back."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() not in PUBLIC_QUERY_KEYS:
            found += [value, quote(value, safe=""), quote(value)]
    raw_values = [chunk.partition("=")[2] for chunk in parts.query.split("&")]
    return sorted({s for s in [*found, *raw_values, *map(unquote, raw_values)] if len(s) >= 4},
                  key=len, reverse=True)


def looks_secret(key: str, value: Any) -> bool:
    """True when ``key`` names a credential (``api_key``, ``hfToken``, ``OPENAI_API_KEY``, not
    ``max_tokens``) or ``value`` is a string that contains one (:data:`SECRET_VALUE`)."""
    if isinstance(value, str) and SECRET_VALUE.search(value):
        return True
    parts = [p.lower() for p in _KEY_WORDS.findall(key)]
    return bool(_SECRET_PARTS & set(parts)) or any(p in _SECRET_PAIRS for p in itertools.pairwise(parts))


def scrub_config(value: Any) -> Any:
    """``value`` made JSON-safe, without keys that name credentials nor values that look like one.

    ``max_tokens`` survives (``tokens`` is not ``token``); ``api_key``, ``hf_token``,
    ``OPENAI_API_KEY``, anything whose value looks like ``sk-...`` and a URL with a password do not.
    A URL's query values are redacted (:func:`redact_url`): the endpoint stays on record.
    """
    if isinstance(value, dict):
        pairs = ((str(k), _scrub_string(v)) for k, v in value.items())
        return {k: scrub_config(v) for k, v in pairs if not looks_secret(k, v)}
    if isinstance(value, (list, tuple)):
        items = (_scrub_string(v) for v in value)
        return [scrub_config(v) for v in items if not looks_secret("", v)]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _scrub_string(value: Any) -> Any:
    """A URL with a query loses its query values; one with a password is left for
    :func:`looks_secret` to drop (such a URL should not exist, and is not kept in part)."""
    if isinstance(value, str) and "://" in value and "?" in value and not SECRET_VALUE.search(
            value.split("?", 1)[0]):
        return redact_url(value)
    return value


def redactor(secrets: Iterable[str | None]) -> Callable[[str], str]:
    """A scrubber for free text: the given ``secrets`` (an API key, a URL's query values) become
    ``[REDACTED]`` and every URL in the text goes through :func:`redact_url`. Meant for error
    paths and log lines, not for every request."""
    known = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first: no partial leftovers

    def redact(text: str) -> str:
        for secret in known:
            if secret in text:
                text = text.replace(secret, "[REDACTED]")
        if "://" in text:
            text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
        if "=" in text and ("?" in text or "&" in text):  # a bare path echoed back: /v1?sig=...
            text = _QUERY_IN_TEXT.sub(_redact_query_value, text)
        return text

    return redact


def _redact_query_value(match: re.Match[str]) -> str:
    sep, key, value = match.groups()
    if key.lower() in PUBLIC_QUERY_KEYS or not value or REDACTED in value:
        return match.group(0)
    return f"{sep}{key}={REDACTED}"


class LogScrubber(logging.Filter):
    """Scrubs secrets out of the log records of HTTP libraries we do not control (the SDK and httpx
    log request URLs, query included, at INFO/DEBUG). One instance per logger, shared by every
    backend of the process; it only runs for records that pass the logger's level."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self._redact = redactor(())

    def add(self, secrets: Iterable[str | None]) -> None:
        self.secrets.update(s for s in secrets if s)
        self._redact = redactor(self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self._redact(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_SCRUBBERS: dict[str, LogScrubber] = {}


def scrub_logs(logger_names: Iterable[str], secrets: Iterable[str | None]) -> None:
    """Make sure the named loggers never emit ``secrets`` (nor a URL's query values)."""
    wanted = [s for s in secrets if s]
    for name in logger_names:
        scrubber = _SCRUBBERS.get(name)
        if scrubber is None:
            scrubber = _SCRUBBERS[name] = LogScrubber()
            logging.getLogger(name).addFilter(scrubber)
        scrubber.add(wanted)
