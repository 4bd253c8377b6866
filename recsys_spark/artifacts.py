"""Model artifacts (small files and bytes) read and written by URI on any file system.

Every model file that is not a Spark ML model (DIN weights and vocabulary, the creator pooling
model, MLflow uploads) goes through this module, so ``storage.model_dir`` may be a local folder
or a URI:

=================================== ==========================================================
location                            how it is read / written
=================================== ==========================================================
``/abs/path``, ``rel/path``,        plain Python file IO on the driver (written to a temporary
``file:/...``, ``file:///...``,     name, then renamed: a reader never sees half a file). No
``/Volumes/...``, ``/dbfs/...``     Spark or fsspec needed.
``s3a:``, ``abfss:``, ``dbfs:``,    with a classic SparkSession: the Hadoop ``FileSystem`` of the
``gs:``, ``hdfs:``, ...             JVM (the cluster's own credentials and connectors, exactly as
                                    Delta tables are written); without one (``spark=None`` or a
                                    Spark Connect session): ``fsspec`` (needs the scheme's
                                    implementation: ``s3fs`` for ``s3a:``, ``adlfs`` for
                                    ``abfss:``; ``dbfs:/x`` is read as ``/dbfs/x`` where that
                                    FUSE mount exists).
=================================== ==========================================================

A scheme that neither can open raises :class:`UnsupportedURIError` naming the scheme.

Executors never open these paths: the driver reads the artifact's bytes and ships them with the
task (:func:`recsys_spark.ranking.din_spark.score_candidates` captures them in the UDF closure,
which PySpark broadcasts when it is larger than 1 MiB), so a model written to a folder only the
driver can see still scores on every executor.

Torch weights are serialised with :func:`torch_bytes` and read back with :func:`torch_from_bytes`
(``torch.load(..., weights_only=True)``: tensors and containers only, no code runs on load).
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import uuid
from typing import Any, Dict, Iterable
from urllib.parse import unquote, urlparse

#: bytes per py4j call when reading / writing through the JVM (py4j sends byte arrays whole)
_JVM_CHUNK = 8 << 20

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


class UnsupportedURIError(ValueError):
    """No file system can open this URI's scheme (the message names the scheme and the fix)."""


# ------------------------------------------------------------------------------------------------
# naming
# ------------------------------------------------------------------------------------------------


def scheme(uri: str) -> str:
    """The URI scheme in lower case (``"s3a"``, ``"file"``); ``""`` for a plain path (``C:\\x`` too)."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"an artifact location must be a non-empty string, got {uri!r}")
    m = _SCHEME.match(uri)
    if m is None or re.match(r"^[A-Za-z]:[\\/]", uri):
        return ""
    return m.group(1).lower()


def is_local(uri: str) -> bool:
    """True for plain paths and ``file:`` URIs (read with Python file IO on this machine)."""
    return scheme(uri) in ("", "file")


def local_path(uri: str) -> str:
    """The local path of a plain path or a ``file:`` URI (``file:///a/b``, ``file:/a/b`` -> ``/a/b``)."""
    s = scheme(uri)
    if s == "":
        return uri
    if s != "file":
        raise ValueError(f"{uri!r} is not a local path")
    p = urlparse(uri)
    if p.netloc not in ("", "localhost"):
        raise UnsupportedURIError(f"file: URI {uri!r} names host {p.netloc!r}; use file:///path (this machine)")
    return unquote(p.path) or "/"


def join(base: str, *parts: str) -> str:
    """``base/part/...`` keeping ``base``'s scheme and authority (``s3a://b/m`` + ``din`` -> ``s3a://b/m/din``)."""
    if is_local(base) and scheme(base) == "":
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/") if not base.endswith(":/") else base, *parts)


# ------------------------------------------------------------------------------------------------
# back ends
# ------------------------------------------------------------------------------------------------


def _classic(spark: Any) -> bool:
    """True for a classic (JVM-backed) SparkSession; False for ``None`` and Spark Connect."""
    return spark is not None and getattr(spark, "_jsc", None) is not None


def _jvm_fs(spark: Any, uri: str):
    """``(jvm, FileSystem, Path)`` for ``uri`` through the session's Hadoop configuration."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    except Exception as exc:  # py4j.protocol.Py4JJavaError: UnsupportedFileSystemException, ClassNotFound
        raise UnsupportedURIError(
            f"cannot open {uri!r}: Spark's Hadoop configuration has no file system for scheme "
            f"{scheme(uri)!r} (add the connector jar and its spark.hadoop.fs.{scheme(uri)}.* settings). "
            f"Hadoop said: {_java_message(exc)}") from None
    return jvm, fs, path


def _java_message(exc: Exception) -> str:
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            return f"{java.getClass().getName()}: {java.getMessage()}"
        except Exception:  # pragma: no cover - the gateway went away
            pass
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _fsspec(uri: str):
    """``(filesystem, path)`` from fsspec, or :class:`UnsupportedURIError` naming the scheme."""
    s = scheme(uri)
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        raise UnsupportedURIError(f"cannot open {uri!r} (scheme {s!r}) without a classic SparkSession: "
                                  "fsspec is not installed") from None
    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise UnsupportedURIError(
            f"cannot open {uri!r}: no file system for scheme {s!r} without a classic SparkSession "
            f"(pass one to use Spark's Hadoop file systems, or install the fsspec implementation of "
            f"{s!r}). fsspec said: {exc}") from None


def _resolve(uri: str, spark: Any):
    """Pick the back end: ``("local", path)``, ``("jvm", uri)`` or ``("fsspec", uri)``."""
    s = scheme(uri)
    if s in ("", "file"):
        return "local", local_path(uri)
    if _classic(spark):
        return "jvm", uri
    if s == "dbfs" and os.path.isdir("/dbfs"):  # Databricks: the FUSE mount of DBFS
        return "local", "/dbfs/" + urlparse(uri).path.lstrip("/")
    return "fsspec", uri


# ------------------------------------------------------------------------------------------------
# bytes and small files
# ------------------------------------------------------------------------------------------------


def write_bytes(uri: str, data: bytes, spark: Any = None) -> str:
    """Write ``data`` to ``uri`` (parent folders created, an existing file replaced); returns ``uri``."""
    data = bytes(data)
    kind, where = _resolve(uri, spark)
    if kind == "local":
        folder = os.path.dirname(os.path.abspath(where))
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(where)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, where)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    elif kind == "jvm":
        _, fs, path = _jvm_fs(spark, where)
        out = fs.create(path, True)
        try:
            for o in range(0, len(data), _JVM_CHUNK):
                out.write(bytearray(data[o:o + _JVM_CHUNK]))
        finally:
            out.close()
    else:
        fs, p = _fsspec(where)
        parent = posixpath.dirname(p.rstrip("/"))
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(p, "wb") as fh:
            fh.write(data)
    return uri


def read_bytes(uri: str, spark: Any = None) -> bytes:
    """The content of ``uri``; ``FileNotFoundError`` naming it when it does not exist."""
    kind, where = _resolve(uri, spark)
    if kind == "local":
        if not os.path.isfile(where):
            raise FileNotFoundError(f"no artifact file at {uri}")
        with open(where, "rb") as fh:
            return fh.read()
    if kind == "jvm":
        _, fs, path = _jvm_fs(spark, where)
        if not fs.isFile(path):
            raise FileNotFoundError(f"no artifact file at {uri}")
        stream = fs.open(path)
        try:
            parts = []
            while True:
                chunk = stream.readNBytes(_JVM_CHUNK)
                if not chunk:
                    break
                parts.append(bytes(chunk))
            return b"".join(parts)
        finally:
            stream.close()
    fs, p = _fsspec(where)
    if not fs.isfile(p):
        raise FileNotFoundError(f"no artifact file at {uri}")
    with fs.open(p, "rb") as fh:
        return fh.read()


def exists(uri: str, spark: Any = None) -> bool:
    """True when a file or folder is at ``uri``."""
    kind, where = _resolve(uri, spark)
    if kind == "local":
        return os.path.exists(where)
    if kind == "jvm":
        _, fs, path = _jvm_fs(spark, where)
        return bool(fs.exists(path))
    fs, p = _fsspec(where)
    return bool(fs.exists(p))


def delete(uri: str, spark: Any = None) -> None:
    """Remove the file or folder at ``uri`` (recursively; nothing there is fine)."""
    kind, where = _resolve(uri, spark)
    if kind == "local":
        import shutil

        if os.path.isdir(where) and not os.path.islink(where):
            shutil.rmtree(where)
        elif os.path.lexists(where):
            os.remove(where)
    elif kind == "jvm":
        _, fs, path = _jvm_fs(spark, where)
        fs.delete(path, True)
    else:
        fs, p = _fsspec(where)
        if fs.exists(p):
            fs.rm(p, recursive=True)


def write_text(uri: str, text: str, spark: Any = None) -> str:
    return write_bytes(uri, text.encode("utf-8"), spark)


def read_text(uri: str, spark: Any = None) -> str:
    return read_bytes(uri, spark).decode("utf-8")


def write_json(uri: str, obj: Any, spark: Any = None, **dump_kwargs) -> str:
    dump_kwargs.setdefault("sort_keys", True)
    return write_text(uri, json.dumps(obj, default=float, **dump_kwargs), spark)


def read_json(uri: str, spark: Any = None) -> Any:
    return json.loads(read_text(uri, spark))


def write_files(folder: str, files: Dict[str, bytes], spark: Any = None) -> str:
    """Write ``{name: bytes}`` into ``folder``, one file each, in the mapping's order (put the file
    whose presence marks a complete artifact last); returns ``folder``."""
    for name, data in files.items():
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"artifact file name {name!r} must be a plain file name")
        write_bytes(join(folder, name), data, spark)
    return folder


def read_files(folder: str, names: Iterable[str], spark: Any = None, optional: Iterable[str] = ()) -> Dict[str, bytes]:
    """``{name: bytes}`` of the files ``names`` in ``folder`` (``optional`` ones are left out when absent)."""
    out = {name: read_bytes(join(folder, name), spark) for name in names}
    for name in optional:
        u = join(folder, name)
        if exists(u, spark):
            out[name] = read_bytes(u, spark)
    return out


# ------------------------------------------------------------------------------------------------
# torch
# ------------------------------------------------------------------------------------------------


def torch_bytes(state: Dict[str, Any]) -> bytes:
    """``torch.save`` of a state dict (tensors moved to the CPU) into bytes."""
    import torch

    buf = io.BytesIO()
    torch.save({k: (v.detach().cpu() if hasattr(v, "detach") else v) for k, v in state.items()}, buf)
    return buf.getvalue()


def torch_from_bytes(blob: bytes) -> Dict[str, Any]:
    """Read :func:`torch_bytes` output safely (``weights_only=True``: no code runs; a pickled
    object raises ``pickle.UnpicklingError``)."""
    import torch

    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def save_torch(uri: str, state: Dict[str, Any], spark: Any = None) -> str:
    return write_bytes(uri, torch_bytes(state), spark)


def load_torch(uri: str, spark: Any = None) -> Dict[str, Any]:
    return torch_from_bytes(read_bytes(uri, spark))


def describe(uri: str, spark: Any = None) -> str:
    """Which back end reads / writes ``uri`` (``local``, ``hadoop`` or ``fsspec``): for logs and docs."""
    kind, _ = _resolve(uri, spark)
    return {"jvm": "hadoop"}.get(kind, kind)


__all__ = ["UnsupportedURIError", "scheme", "is_local", "local_path", "join", "write_bytes", "read_bytes",
           "exists", "delete", "write_text", "read_text", "write_json", "read_json", "write_files",
           "read_files", "torch_bytes", "torch_from_bytes", "save_torch", "load_torch", "describe"]
