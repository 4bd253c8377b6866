"""Safety checks for values that come from config files, arguments or data.

- :func:`safe_path`: a path taken from config / arguments must stay under its root (the
  warehouse or the model folder): no ``..`` escapes, no absolute path elsewhere, no symlink out,
  no characters that would break out of a ``delta.`<path>``` SQL reference.
- :func:`validate_identifier` / :func:`validate_table_name`: catalog, schema, table and view
  names (SQL identifiers are never quoted from user text; they are checked, then used).
- :func:`find_plaintext_secrets` / :func:`check_conf_file`: conf files hold no secrets: a key
  named like ``*password*``, ``*token*``, ``*secret*``, ``*key*`` (or a credential) must be a
  ``${ENV:NAME}`` reference (or a Databricks ``{{secrets/scope/key}}`` reference), and no value
  anywhere may look like a well-known token format.
- :func:`assert_not_pickle`: model / data files that would be unpickled are refused.

Nothing here touches Spark; every function is cheap and can be called at the boundaries
(config loading, ``Tables`` construction, model ``save`` / ``load``).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Union
from urllib.parse import urlparse

import yaml


class UnsafeValueError(ValueError):
    """A path, identifier or conf value failed a safety check (the message says which and why)."""


# ------------------------------------------------------------------------------------------------
# paths
# ------------------------------------------------------------------------------------------------

_BAD_PATH_CHARS = ("\x00", "`", "\n", "\r")


def is_uri(p: str) -> bool:
    """True for ``scheme:/...`` (``s3a://``, ``dbfs:/``, ``file:/``), false for a Windows drive path."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:/", p)) and not re.match(r"^[A-Za-z]:[\\/]", p)




def safe_path(root: str, path: str) -> str:
    """Resolve ``path`` against ``root`` and check the result stays under ``root``.

    Parameters
    ----------
    root : str
        The allowed root: a local folder or a URI (``s3a://bucket/wh``, ``abfss://c@acct/wh``,
        ``dbfs:/mnt/wh``, ``/Volumes/main/recsys/models``).
    path : str
        Relative (joined to ``root``) or absolute / a URI (must lie under ``root``).

    Returns
    -------
    str
        The normalised absolute path (symlinks resolved for local paths) or URI.

    Raises
    ------
    UnsafeValueError
        ``..`` that escapes, an absolute path or URI outside ``root``, another scheme or bucket,
        a symlink pointing outside, or a NUL / backtick / newline character.

    Examples
    --------
    >>> safe_path("/data/wh", "discover_weekly")
    '/data/wh/discover_weekly'
    """
    for value, label in ((root, "root"), (path, "path")):
        if not isinstance(value, str) or not value:
            raise UnsafeValueError(f"{label} must be a non-empty string, got {value!r}")
        bad = [c for c in _BAD_PATH_CHARS if c in value]
        if bad:
            raise UnsafeValueError(f"{label} {value!r} contains a forbidden character {bad[0]!r}")
    if is_uri(root) or is_uri(path):
        return _safe_uri(root, path)
    root_real = os.path.realpath(root)
    cand = path if os.path.isabs(path) else os.path.join(root_real, path)
    real = os.path.realpath(cand)
    if os.path.commonpath([root_real, real]) != root_real:
        raise UnsafeValueError(f"path {path!r} resolves to {real}, outside the allowed root {root_real}")
    return real


def _safe_uri(root: str, path: str) -> str:
    r = urlparse(root)
    if not is_uri(root):
        raise UnsafeValueError(f"path {path!r} is a URI but the allowed root {root!r} is local")
    p = urlparse(path) if is_uri(path) else None
    rpath = posixpath.normpath(r.path or "/")
    if p is None:
        if path.startswith("/"):
            raise UnsafeValueError(f"absolute path {path!r} is outside the allowed root {root!r}")
        joined = posixpath.normpath(posixpath.join(rpath, path))
        scheme, netloc = r.scheme, r.netloc
    else:
        if (p.scheme.lower(), p.netloc) != (r.scheme.lower(), r.netloc):
            raise UnsafeValueError(f"path {path!r} is on {p.scheme}://{p.netloc}, not on the allowed root {root!r}")
        if p.query or p.fragment or p.params:
            raise UnsafeValueError(f"path {path!r} carries a query / fragment")
        joined = posixpath.normpath(p.path or "/")
        scheme, netloc = p.scheme, p.netloc
    if ".." in path.split("/") or not (joined == rpath or joined.startswith(rpath.rstrip("/") + "/")):
        raise UnsafeValueError(f"path {path!r} is outside the allowed root {root!r}")
    sep = "://" if root.split(":", 1)[1].startswith("//") else ":"
    return f"{scheme}{sep}{netloc}{joined}"


# ------------------------------------------------------------------------------------------------
# identifiers
# ------------------------------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def validate_identifier(name: Any, what: str = "identifier") -> str:
    """``name`` if it is a plain SQL identifier (letters, digits, ``_``; not starting with a
    digit; at most 128 characters), else :class:`UnsafeValueError`."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise UnsafeValueError(f"invalid {what} {name!r}: use letters, digits and '_' (not starting with a digit)")
    return name


def validate_table_name(name: Any) -> str:
    """``table``, ``schema.table`` or ``catalog.schema.table``, each part a plain identifier."""
    if not isinstance(name, str):
        raise UnsafeValueError(f"invalid table name {name!r}")
    parts = name.split(".")
    if not 1 <= len(parts) <= 3:
        raise UnsafeValueError(f"invalid table name {name!r}: at most catalog.schema.table")
    for part in parts:
        validate_identifier(part, "table name part")
    return name


# ------------------------------------------------------------------------------------------------
# secrets in conf
# ------------------------------------------------------------------------------------------------

SECRET_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "token", "secret", "apikey", "credential",
                          "credentials"})
# "key" is a secret only as "<qualifier> key" (access_key, fs.azure.account.key, private-key, apiKey)
# or alone: "task_key" / "job_cluster_key" / "partition_key" name structure, not secrets.
KEY_QUALIFIERS = frozenset({"api", "access", "secret", "private", "account", "sas", "encryption", "master",
                            "client", "signing", "storage", "service", "shared", "auth", "ssh", "subscription"})
_ENV_REF = re.compile(r"^\$\{ENV:[A-Za-z_][A-Za-z0-9_]*\}$")
_DBX_SECRET_REF = re.compile(r"^\{\{secrets/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+\}\}$")
# well-known token shapes: AWS access key, Databricks PAT, GitHub, Slack, private key blocks, JWT
_TOKEN_SHAPES = [
    ("aws access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("databricks token", re.compile(r"\bdapi[0-9a-f]{32}\b")),
    ("github token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b")),
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b")),
]


def _key_words(key: str) -> List[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key))
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: str) -> bool:
    """True when a key names a secret (``password``, ``sas_token``, ``fs.s3a.secret.key``,
    ``apiKey``, ``fs.azure.account.key.x``...); ``tokenizer_path``, ``keywords``, ``task_key``
    or ``job_cluster_key`` do not."""
    words = _key_words(key)
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(w == "key" and (len(words) == 1 or (i > 0 and words[i - 1] in KEY_QUALIFIERS))
               for i, w in enumerate(words))


def is_reference(value: Any) -> bool:
    """``${ENV:NAME}`` or ``{{secrets/scope/key}}``."""
    return isinstance(value, str) and bool(_ENV_REF.match(value.strip()) or _DBX_SECRET_REF.match(value.strip()))


def find_plaintext_secrets(data: Any, prefix: str = "") -> List[str]:
    """Dotted keys of values that are plaintext secrets, with why (empty list = clean).

    A key named like a secret must hold an environment / secret-scope reference, or be empty;
    any string value shaped like a well-known token is flagged wherever it is.
    """
    found: List[str] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, (Mapping, list, tuple)):
                found += find_plaintext_secrets(v, key)
                continue
            if is_secret_key(str(k)) and v not in (None, "") and not isinstance(v, bool) and not is_reference(v):
                found.append(f"{key}: secret-like key holds a plaintext value (use ${{ENV:NAME}})")
            elif isinstance(v, str):
                found += [f"{key}: value looks like a {what}" for what, rx in _TOKEN_SHAPES if rx.search(v)]
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            found += find_plaintext_secrets(v, f"{prefix}[{i}]")
    elif isinstance(data, str):
        found += [f"{prefix}: value looks like a {what}" for what, rx in _TOKEN_SHAPES if rx.search(data)]
    return found


def check_conf_file(path: Union[str, Path]) -> List[str]:
    """:func:`find_plaintext_secrets` over every YAML document of a file."""
    with open(path, encoding="utf-8") as fh:
        docs = list(yaml.safe_load_all(fh))
    found: List[str] = []
    for doc in docs:
        found += find_plaintext_secrets(doc)
    return found


def assert_no_plaintext_secrets(paths: Iterable[Union[str, Path]]) -> None:
    """Raise :class:`UnsafeValueError` listing every plaintext secret in the given conf files."""
    problems: Dict[str, List[str]] = {str(p): check_conf_file(p) for p in paths}
    bad = {p: v for p, v in problems.items() if v}
    if bad:
        lines = [f"{p}: {msg}" for p, msgs in bad.items() for msg in msgs]
        raise UnsafeValueError("plaintext secrets in conf:\n  " + "\n  ".join(lines))


# ------------------------------------------------------------------------------------------------
# pickles
# ------------------------------------------------------------------------------------------------

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".npy_pickle")


def assert_not_pickle(path: Union[str, Path]) -> str:
    """Refuse files that would be unpickled (``.pkl``, ``.pickle``, ``.joblib``, ``.dill``).

    Model weights are loaded with ``torch.load(..., weights_only=True)`` / safetensors and arrays
    with ``np.load(..., allow_pickle=False)``; a pickle found in a data or model folder is
    never loaded.
    """
    p = str(path)
    if p.lower().endswith(PICKLE_SUFFIXES):
        raise UnsafeValueError(f"refusing to load pickle file {p!r} (pickles execute code on load)")
    return p
