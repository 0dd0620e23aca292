"""One owner per run directory: a second process is refused with the holder's pid, a dead holder's lock is taken
over, and the pipeline's own notebook kernels go on."""

import os
import signal
import subprocess
import sys
import time

import pytest

from budgetlab import pipeline
from budgetlab.rundir import LOCK_NAME, OWNER_ENV, RunDirBusy, claim, release

HOLD = "import sys, time; from budgetlab.rundir import claim; claim(sys.argv[1]); print('held', flush=True); time.sleep(60)"


def holder(run_dir):
    """A separate process that owns run_dir until killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    p = holder(tmp_path)
    try:
        with pytest.raises(RunDirBusy, match=f"run directory {tmp_path} is in use by pid {p.pid}; wait for it"):
            claim(tmp_path)
    finally:
        p.kill()
        p.wait()


def test_a_killed_holders_lock_is_taken_over_with_a_message(tmp_path, capsys):
    p = holder(tmp_path)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(p.pid)  # the dead process's pid is still written there
    assert claim(tmp_path) is True
    try:
        assert f"left by pid {p.pid}, which no longer runs" in capsys.readouterr().err
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        release(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: the next owner takes it over silently


def test_the_pipelines_own_kernels_go_on_under_its_lock(tmp_path, monkeypatch):
    p = holder(tmp_path)
    try:
        monkeypatch.setenv(OWNER_ENV, str(p.pid))  # what a kernel started by that pipeline inherits
        assert claim(tmp_path) is False
    finally:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_two_pipelines_on_one_run_directory_the_second_refuses_and_the_first_finishes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "budgetlab.pipeline", "--profile", "smoke", "--run-dir",
                              str(run_dir), "--until", "00_data_prep"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    lock = run_dir / LOCK_NAME
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text().strip() == str(first.pid)) and time.time() < deadline:
        time.sleep(0.2)
    assert pipeline.main(["--profile", "smoke", "--run-dir", str(run_dir), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"budgetlab: run directory {run_dir} is in use by pid {first.pid}; wait for it to finish, stop it, " \
                  "or pick another run directory."
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert "[budgetlab] 00_data_prep:" in out and "over TCP" not in out  # kernels over private Unix sockets
    assert (run_dir / "stages" / "00_data_prep.done").exists() and (run_dir / "data" / "train.jsonl").exists()
    assert lock.read_text() == ""  # released at the end


OFFLINE = [str(pipeline.PROJECT_ROOT / "scripts" / "offline.sh")]


def _offline_works() -> bool:
    return subprocess.run(["sh", *OFFLINE, "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _offline_works(), reason="unshare -rn with ip link is not permitted here")
def test_the_chain_runs_in_a_network_namespace_with_loopback_only(tmp_path):
    # scripts/offline.sh: a fresh network namespace whose only interface is lo; a hub request has nowhere to go
    names = subprocess.run(["sh", *OFFLINE, sys.executable, "-c", "import socket; print(socket.if_nameindex())"],
                           capture_output=True, text=True)
    assert names.stdout.strip() == "[(1, 'lo')]", names
    run = subprocess.run(["sh", *OFFLINE, sys.executable, "-m", "budgetlab.pipeline", "--profile", "smoke",
                          "--run-dir", str(tmp_path / "run"), "-p", "METHODS=[grpo]", "-p", "SB_PROBLEMS=0"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "run" / "report.html").exists()
