"""The MLflow tracking store, checked before any work.

MLflow itself retries an unreachable server for minutes and reports a broken store in a long
traceback, after the data is loaded. :func:`check_tracking_store` asks first, with a short
timeout, and raises :class:`~jaxaudio.training.config.ConfigError` naming ``--mlflow_uri`` and
``--no_mlflow``:

- ``http(s)://``: the server must answer MLflow's REST API within ``timeout`` seconds;
- ``sqlite:///FILE``: an existing file must be a readable SQLite database (MLflow's, or empty);
- MLflow must be installed.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

from jaxaudio.training.config import ConfigError

TIMEOUT_S = 5.0


def _refuse(uri: str, problem: str) -> ConfigError:
    return ConfigError(f"--mlflow_uri {uri}: {problem}; fix it, pass another --mlflow_uri, or "
                       f"train without tracking (--no_mlflow)")


def _check_server(uri: str, timeout: float) -> None:
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise _refuse(uri, f"the server answers, but not as an MLflow tracking server "
                           f"(HTTP {e.code} for {url})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise _refuse(uri, f"no MLflow tracking server answers within {timeout:g} s "
                           f"({reason})") from None
    except ValueError:
        raise _refuse(uri, f"the server answers, but not as an MLflow tracking server "
                           f"(no JSON from {url})") from None


def _check_sqlite(uri: str) -> None:
    db = Path(uri[len("sqlite:///"):])
    if not db.exists():
        return  # MLflow creates it
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=TIMEOUT_S)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master "
                                                "WHERE type='table'")}
            bad = con.execute("PRAGMA quick_check").fetchone()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise _refuse(uri, f"{db} is not a readable SQLite database ({e})") from None
    if bad and bad[0] != "ok":
        raise _refuse(uri, f"{db} is a damaged SQLite database ({bad[0]})")
    if tables and "experiments" not in tables:
        raise _refuse(uri, f"{db} is a SQLite database, but not MLflow's (no experiments "
                           f"table)")


def check_tracking_store(uri: str, timeout: float = TIMEOUT_S) -> None:
    """Raise :class:`ConfigError` when MLflow cannot log to ``uri`` (see the module doc)."""
    if importlib.util.find_spec("mlflow") is None:
        raise _refuse(uri, "MLflow is not installed (pip install mlflow)")
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout)
    elif uri.startswith("sqlite:///"):
        _check_sqlite(uri)
