"""Which server answers: the base URL a run calls, and its identity for the response cache.

An answer is reused only for the endpoint that gave it (ARCHITECTURE.md, "Cache identity"):
the cache is keyed by `cache_scope(base_url)` plus the request's fingerprint. The scope is the
normalised URL (scheme and host lower-cased, default port and trailing slashes dropped, user
name, password, query and fragment never kept), so `https://API.openai.com:443/v1/` and
`https://api.openai.com/v1` share entries and nothing secret is stored. The built-in simulator
has one fixed scope whatever port it listens on, so its (deterministic) answers are reused
between runs on it and never served to a real endpoint.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

BUILTIN_SIMULATOR_SCOPE = "builtin-simulator"
BASE_URL_ENV = "OPENAI_BASE_URL"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def chosen_base_url(flag: str | None) -> str | None:
    """--base-url, else $OPENAI_BASE_URL, else None (the built-in simulator)."""
    return flag or os.environ.get(BASE_URL_ENV) or None


def cache_scope(base_url: str | None) -> str:
    """The cache identity of an endpoint (None: the built-in simulator)."""
    if base_url is None:
        return BUILTIN_SIMULATOR_SCOPE
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{netloc}{path}"
