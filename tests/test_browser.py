"""The notebooks as a person uses them: JupyterLab in a real browser (Chromium from the system packages, driven
by Playwright), notebook 03 executed on a smoke run, the budget dial moved; report.html opened with every figure
loaded. Screenshots go to the test's temporary folder.

Runs with `make test-browser` (CI calls it; `make test` deselects the `browser` marker); it skips where Chromium,
Playwright or a loopback address is missing."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from budgetlab import pipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def free_port() -> int | None:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    except OSError:  # no loopback (a network namespace without interfaces)
        return None


@pytest.fixture(scope="module")
def browser():
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make setup installs it)")
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium")
    if free_port() is None:
        pytest.skip("no loopback address to serve JupyterLab on")
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, browser):
    run = tmp_path_factory.mktemp("browser") / "run"
    pipeline.run("smoke", run, {"METHODS": ["grpo"], "SB_PROBLEMS": 0})
    return run


@pytest.fixture
def lab(tmp_path, smoke_run):
    """JupyterLab on a free local port with a token, serving a copy of notebook 03 parameterised for the run."""
    import papermill as pm

    params = {**json.loads((smoke_run / "config.json").read_text()), "RUN_DIR": str(smoke_run)}
    src = pipeline.NOTEBOOKS / "03_anytime_eval.ipynb"
    given = {k: v for k, v in params.items() if k in pm.inspect_notebook(str(src))}
    pm.execute_notebook(str(src), str(tmp_path / "03.ipynb"), parameters=given, prepare_only=True)
    port, token = free_port(), "budgetlab-test-token"
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                             "--ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={tmp_path}"],
                            cwd=pipeline.PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not answer within 90 s")
    yield f"{url}/lab/tree/03.ipynb?token={token}"
    proc.terminate()
    proc.wait(timeout=30)


def dial_text(page) -> str:
    return page.locator(".widget-html-content").last.inner_text()


def wait_for_idle_kernel(lab: str, timeout: float = 120) -> None:
    """Until the server reports the notebook's kernel idle: what a person waits for in the status bar."""
    base, token = lab.split("/lab/")[0], lab.split("token=")[1]
    deadline = time.time() + timeout
    sessions = []
    while time.time() < deadline:
        try:
            sessions = json.loads(urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5).read())
        except OSError:  # a busy server: ask again
            pass
        if any(s["path"].endswith("03.ipynb") and s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        time.sleep(0.5)
    pytest.fail(f"the kernel of 03.ipynb was not idle within {timeout:.0f} s: {sessions}")


def close_dialogs(page, tmp_path, seen: list[str]) -> None:
    """A modal JupyterLab dialog (a kernel to select, a kernel restarting) takes every click. As a person would,
    read it and press its default button; its text is kept for the failure message and a screenshot saved."""
    for _ in range(5):
        dialog = page.locator(".jp-Dialog")
        if dialog.count() == 0:
            return
        seen.append(dialog.first.inner_text())
        page.screenshot(path=str(tmp_path / f"dialog{len(seen)}.png"), full_page=True)
        dialog.first.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        page.wait_for_timeout(500)


def test_notebook_03_runs_in_jupyterlab_and_the_budget_dial_moves_the_cut(browser, lab, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(lab)
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    wait_for_idle_kernel(lab)
    dialogs: list[str] = []
    for attempt in range(4):  # Run > Run All Cells; a click that lands before the kernel is ready is lost, so
        close_dialogs(page, tmp_path, dialogs)  # retry until a cell is queued
        try:
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click(timeout=10_000)
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click(timeout=10_000)
            page.wait_for_function("Array.from(document.querySelectorAll('.jp-InputPrompt'))"
                                   ".some(p => /\\[(\\*|\\d+)\\]/.test(p.innerText))", timeout=30_000)
            break
        except Exception:
            if attempt == 3:
                pytest.fail(f"Run All Cells queued no cell in 4 tries; JupyterLab's dialogs: {dialogs}")
    print("JupyterLab's dialogs on the way:", dialogs)
    slider = page.locator(".widget-hslider .noUi-handle, .widget-hslider .slider-handle").last
    try:
        slider.wait_for(timeout=300_000)  # the dial is the last cell: everything before it ran
    except Exception:
        page.screenshot(path=str(tmp_path / "no_dial.png"), full_page=True)
        raise
    page.wait_for_function("document.querySelectorAll('.widget-html-content').length > 0", timeout=60_000)
    before = dial_text(page)
    assert "thinking" in before and "graded text" in before
    page.screenshot(path=str(tmp_path / "dial_before.png"), full_page=True)
    close_dialogs(page, tmp_path, dialogs)  # one opened during the run would take the key press
    slider.focus()
    page.keyboard.press("Home")  # the smallest budget: the cut moves
    page.wait_for_function("t => document.querySelectorAll('.widget-html-content')[document.querySelectorAll("
                           "'.widget-html-content').length - 1].innerText !== t", arg=before, timeout=60_000)
    after = dial_text(page)
    page.screenshot(path=str(tmp_path / "dial_after.png"), full_page=True)
    assert after != before and "thinking" in after
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] :text('Error')")
    assert errors.count() == 0


def test_report_html_shows_every_figure(browser, smoke_run, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto((smoke_run / "report.html").as_uri())
    page.wait_for_load_state("load")
    widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert len(widths) >= 3 and all(w > 0 for w in widths), widths
