"""Tests of the `repro` Python helper (python/repro), run by scripts/wheel.sh --check against the
wheel installed in a fresh venv: the unit tests drive the channels with the variables set by
hand, the end-to-end test runs `repro run --host -- python train.py` with the installed command."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import warnings

import pytest

import repro

VARS = ["REPRO_RUN_ID", "REPRO_METRICS", "REPRO_PARAMS", "REPRO_OUTPUTS", "REPRO_WORKDIR"]


@pytest.fixture
def channels(tmp_path, monkeypatch):
    for v in VARS:
        monkeypatch.delenv(v, raising=False)
    files = {v: tmp_path / f"{v.lower()}.jsonl" for v in ["REPRO_METRICS", "REPRO_PARAMS", "REPRO_OUTPUTS"]}
    for v, f in files.items():
        f.write_text("")
        monkeypatch.setenv(v, str(f))
    monkeypatch.setenv("REPRO_RUN_ID", "01testrun")
    monkeypatch.setenv("REPRO_WORKDIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return files


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_log_appends_a_line_with_the_time_and_step(channels):
    before = time.time()
    repro.log(step=3, loss=0.25, acc=1)
    repro.log(**{"val/acc": 0.5})
    got = lines(channels["REPRO_METRICS"])
    assert len(got) == 2
    assert got[0]["step"] == 3 and got[0]["loss"] == 0.25 and got[0]["acc"] == 1.0
    assert before <= got[0]["ts"] <= time.time()
    assert "step" not in got[1] and got[1]["val/acc"] == 0.5


def test_log_writes_nan_and_infinities_as_repro_reads_them(channels):
    repro.log(a=float("nan"), b=float("inf"), c=float("-inf"))
    got = lines(channels["REPRO_METRICS"])[0]
    assert (got["a"], got["b"], got["c"]) == ("NaN", "inf", "-inf")


def test_log_refuses_what_is_not_a_metric(channels):
    with pytest.raises(TypeError):
        repro.log(loss="low")
    with pytest.raises(TypeError):
        repro.log(flag=True)
    with pytest.raises(TypeError):
        repro.log(step=1.5, loss=1)
    assert channels["REPRO_METRICS"].read_text() == ""


def test_log_params_merges_mapping_and_keywords_as_text(channels):
    repro.log_params({"lr": 0.1, "opt": "adam"}, batch=64, layers=[1, 2])
    assert lines(channels["REPRO_PARAMS"]) == [
        {"batch": "64", "layers": "[1, 2]", "lr": "0.1", "opt": "adam"}
    ]
    with pytest.raises(TypeError):
        repro.log_params({1: "x"})


def test_output_is_relative_to_the_working_directory(channels, tmp_path):
    (tmp_path / "out").mkdir()
    repro.output("out/model.pt")
    repro.output(pathlib.Path(tmp_path / "out" / "b.pt"))
    repro.output("/elsewhere/x")
    got = [l["path"] for l in lines(channels["REPRO_OUTPUTS"])]
    assert got == ["out/model.pt", "out/b.pt", "/elsewhere/x"]
    with pytest.raises(ValueError):
        repro.output("")


def test_outside_a_run_every_call_is_a_no_op_that_warns_once(tmp_path, monkeypatch):
    for v in VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(repro, "_warned", False)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(RuntimeWarning, match="not running under `repro run`"):
        repro.log(loss=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repro.log(loss=2.0)
        repro.log_params(lr=0.1)
        repro.output("x")
    assert repro.run_id() is None and not repro.in_run()
    assert list(tmp_path.iterdir()) == []


TRAIN = """
import repro, time
repro.log_params({"lr": 0.1}, batch=64)
for step in range(3):
    repro.log(step=step, loss=1.0 / (step + 1))
    time.sleep(0.2)
with open("model.bin", "w") as f:
    f.write("weights")
repro.output("model.bin")
print("run", repro.run_id())
"""


def test_a_wrapped_run_records_the_helper_s_metrics_params_and_output(tmp_path):
    exe = shutil.which("repro")
    assert exe, "the repro command is not on PATH (install the wheel: scripts/wheel.sh --check)"
    env = dict(os.environ, REPRO_DB=str(tmp_path / "db" / "repro.db"))
    for v in VARS:
        env.pop(v, None)
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / ".gitignore").write_text("model.bin\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "."], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "train"], cwd=repo, check=True)
    r = subprocess.run(
        [exe, "run", "--host", "--param", "batch=32", "--", sys.executable, "train.py"],
        cwd=repo, env=env, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "--param 32 wins over the 64 the job logged" in r.stderr
    run_id = r.stdout.split()[-1]
    show = json.loads(subprocess.run(
        [exe, "show", run_id, "--json", "--history"], cwd=repo, env=env,
        capture_output=True, text=True, check=True,
    ).stdout)
    assert show["params"] == {"batch": "32", "lr": "0.1"}
    assert show["params_from_job"] == ["lr"]
    loss = show["metrics"]["loss"]
    assert loss["count"] == 3 and loss["step"] == 2 and loss["last"] == pytest.approx(1 / 3)
    outputs = {o["path"]: o for o in show["outputs"]}
    assert outputs["model.bin"]["kept"] is True
    import hashlib
    assert outputs["model.bin"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
