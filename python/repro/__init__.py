"""Helpers for a training script run under ``repro run`` (no dependencies).

``repro run`` gives the job a few variables; these functions write to them::

    import repro
    repro.log_params(lr=0.1, batch=64)     # recorded as params (an explicit --param wins)
    for step in range(10):
        repro.log(step=step, loss=0.5, acc=0.8)   # metrics, with the time they were logged
    repro.output("model.pt")               # hashed (and kept) at the end like --output
    print(repro.run_id())                  # the run's id, or None outside repro

Outside a repro run every call does nothing and warns once (``RuntimeWarning``), so the same
script runs with or without repro. Values must be JSON-encodable; a metric must be a number.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
import warnings
from typing import Any, Mapping, Optional, Union

__all__ = ["log", "log_params", "output", "run_id", "in_run"]

__version__ = "0.1.0"

RUN_ID_VAR = "REPRO_RUN_ID"
METRICS_VAR = "REPRO_METRICS"
PARAMS_VAR = "REPRO_PARAMS"
OUTPUTS_VAR = "REPRO_OUTPUTS"
WORKDIR_VAR = "REPRO_WORKDIR"

_warned = False


def _outside(what: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"repro.{what}: not running under `repro run` ({RUN_ID_VAR} is not set); "
            "repro calls do nothing in this process",
            RuntimeWarning,
            stacklevel=4,
        )


def _channel(var: str, what: str) -> Optional[str]:
    if not os.environ.get(RUN_ID_VAR):
        _outside(what)
        return None
    path = os.environ.get(var)
    if not path:
        # Inside a run whose wrapper could not create the file: it said so itself.
        return None
    return path


def _append(path: str, line: str) -> None:
    # One write of one line, in append mode: lines from several processes never interleave.
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def in_run() -> bool:
    """Whether this process runs under ``repro run`` (or ``repro rerun``)."""
    return bool(os.environ.get(RUN_ID_VAR))


def run_id() -> Optional[str]:
    """The id of the run this process belongs to, or ``None`` outside repro (no warning)."""
    return os.environ.get(RUN_ID_VAR) or None


def log(step: Optional[int] = None, **metrics: Union[int, float]) -> None:
    """Records metric points: ``repro.log(step=3, loss=0.25, acc=0.9)``.

    Each call is one line of ``$REPRO_METRICS`` with ``ts`` (the time now, seconds since the
    epoch) and ``step`` when given. Keys may hold ``/`` (``"val/acc"``: pass them with
    ``**{"val/acc": 0.9}``). NaN and infinities are recorded as such.
    """
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
        raise TypeError(f"repro.log: step must be an int, not {type(step).__name__}")
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"repro.log: metric {k!r} must be a number, not {type(v).__name__}")
    path = _channel(METRICS_VAR, "log")
    if path is None or not metrics:
        return
    point: dict = {"ts": time.time()}
    if step is not None:
        point["step"] = int(step)
    for k, v in metrics.items():
        f = float(v)
        # JSON has no NaN/Infinity: repro reads these strings as the values.
        point[k] = f if math.isfinite(f) else ("NaN" if math.isnan(f) else ("inf" if f > 0 else "-inf"))
    _append(path, json.dumps(point, allow_nan=False))


def log_params(mapping: Optional[Mapping[str, Any]] = None, **params: Any) -> None:
    """Records params: ``repro.log_params({"lr": 0.1}, batch=64)``.

    Read by repro when the job ends. A param given with ``repro run --param`` wins over the same
    key here; one logged here wins over one read from the command's arguments. Values are
    recorded as text: strings as they are, anything else as its JSON form (``0.1``, ``true``,
    ``[1, 2]``).
    """
    merged = dict(mapping or {})
    merged.update(params)
    for k in merged:
        if not isinstance(k, str) or not k:
            raise TypeError(f"repro.log_params: keys must be non-empty strings, not {k!r}")
    text = {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in merged.items()}
    path = _channel(PARAMS_VAR, "log_params")
    if path is None or not text:
        return
    _append(path, json.dumps(text, sort_keys=True))


def output(path: Union[str, "os.PathLike[str]"]) -> None:
    """Declares an output file or directory of the run, as ``repro run --output PATH`` does.

    Hashed (and kept, by the run's keep policy) when the job ends, so write it before the job
    exits. The path must be inside the run's working directory.
    """
    p = os.fspath(path)
    if not p:
        raise ValueError("repro.output: the path is empty")
    channel = _channel(OUTPUTS_VAR, "output")
    if channel is None:
        return
    workdir = os.environ.get(WORKDIR_VAR) or os.getcwd()
    absolute = os.path.abspath(p)
    rel = os.path.relpath(absolute, os.path.abspath(workdir))
    # Outside the working directory: sent as it is, and refused (with a warning) by repro.
    _append(channel, json.dumps({"path": absolute if rel.startswith("..") else rel}))
