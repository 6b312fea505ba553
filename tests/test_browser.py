"""The workbench in a real browser: Debian's Chromium driven by Playwright, started by the test itself.

1. JupyterLab on a copy of the notebooks: run notebook 04 to its editor, change two values, Save, and the
   params file (a copy of params/demo.yaml) changes in exactly those two keys, comments kept.
2. The smoke run's index.html and every report: no raw dict, no traceback, nothing wider than the window.

Skipped, with the reason, where no Chromium is installed; `make test-browser` installs Debian's package
(apt-get install chromium) and runs this file. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest
import yaml

from nbkit import paths

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed: run `make test-browser`, which installs "
                       "Debian's chromium package (apt-get install chromium) and runs this test"),
]
WIDTH = 1280
RAW_DICT = re.compile(r"\{'[^']*': ")


def _wait_until_serving(url: str, server: subprocess.Popen, seconds: float, log) -> None:
    """Until `url` answers; fails with the server's log when it exits or `seconds` pass (a busy machine
    starts servers slowly: the limit only stops a test that would otherwise hang)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer:\n{log()}") from None
            time.sleep(0.5)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system package; every request off this machine is refused (reports
    reference CDN scripts that a shared, offline report must not need)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _page(browser, offline_except: str | None = None):
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    allowed = offline_except or "file://"
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith((allowed, "file://", "data:"))
               else route.abort())
    return page


def test_index_and_every_report_read_well_in_a_browser(first_run, browser):
    run, _, _ = first_run
    page = _page(browser)
    pages = [run / "index.html", *sorted(run.glob("[0-9][0-9]_*/report.html"))]
    for path in pages:
        page.goto(path.as_uri(), wait_until="load")
        text = page.inner_text("body")
        where = path.relative_to(run)
        assert not RAW_DICT.search(text), f"{where}: a raw Python dict"
        assert "Traceback (most recent call last)" not in text, f"{where}: a traceback"
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{where}: {overflow}px wider than a {WIDTH}px window"
    page.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a copy of the notebooks, 04's `save_to` pointing at a copy of params/demo.yaml."""
    folder = tmp_path / "notebooks"
    shutil.copytree(paths.NOTEBOOKS, folder)
    params_copy = tmp_path / "demo.yaml"
    shutil.copy(paths.PARAMS / "demo.yaml", params_copy)
    path = folder / "04_launch_training.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = re.sub(r'^save_to: str = ""', f"save_to: str = {str(params_copy)!r}", cell.source, flags=re.M)
    nbformat.write(nb, path)
    port = _free_port()
    env = dict(os.environ, NBKIT_RUNS=str(tmp_path / "runs"), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={folder}",
               "--LabApp.expose_app_in_browser=True"] + (["--allow-root"] if os.geteuid() == 0 else [])
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(f"{url}/api/status", server, 180, lambda: (tmp_path / "lab.log").read_text())
        yield url, params_copy
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_the_editor_in_jupyterlab_saves_exactly_the_two_values_changed(lab, browser):
    url, params_copy = lab
    before = params_copy.read_text()
    page = _page(browser, offline_except=url)
    page.goto(f"{url}/lab/tree/04_launch_training.ipynb")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=90_000)
    page.wait_for_function("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                           timeout=90_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    save = page.locator(".jupyter-widgets button", has_text="Save")
    save.wait_for(timeout=180_000)
    steps = page.locator(".widget-inline-hbox:has(> label:text-is('max_steps')) input")
    in_file = yaml.safe_load(before)["04_launch_training"]["max_steps"]
    assert steps.input_value() == str(in_file)  # the form starts from the file, not the preset's 200
    steps.fill(str(in_file + 100))
    steps.press("Enter")
    page.locator(".widget-inline-hbox:has(> label:text-is('number_generation')) select").select_option(label="4")
    page.get_by_text("unsaved changes: number_generation, max_steps").wait_for(timeout=30_000)
    save.click()
    page.get_by_text("saved into").wait_for(timeout=30_000)
    after = yaml.safe_load(params_copy.read_text())
    expected = yaml.safe_load(before)
    expected["04_launch_training"] |= {"max_steps": in_file + 100, "number_generation": 4}
    assert after == expected
    changed = [b for a, b in zip(before.splitlines(), params_copy.read_text().splitlines(), strict=True) if a != b]
    assert [line.split("#")[0].strip() for line in changed] == ["number_generation: 4", f"max_steps: {in_file + 100}"]
    assert all("#" in line for line in changed)  # the comments on the changed lines stay
    page.close()


def test_mlflow_ui_on_a_copied_run_shows_its_own_training_run(first_run, browser, tmp_path):
    """`nbkit mlflow` (make mlflow) on a copy of the run, with the original moved away: the UI opens on the
    experiment's training runs and the run's artifacts come from the copy."""
    import json
    import signal

    run, _, _ = first_run
    copy = tmp_path / "shared" / run.name
    shutil.copytree(run, copy)
    handle = json.loads((copy / "training" / "job.json").read_text())["handle"]
    port = _free_port()
    away = run.with_name(run.name + "-away")
    run.rename(away)
    server = subprocess.Popen([sys.executable, "-m", "nbkit.cli", "mlflow", str(copy), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first = server.stdout.readline()
        address = re.search(r"open (http://\S+)", first)
        assert address and "#/experiments/" in address[1] and address[1].endswith("/runs?workflowType=machine_learning")
        _wait_until_serving(f"http://127.0.0.1:{port}/health", server, 180, server.stdout.read)
        page = _page(browser, offline_except=f"http://127.0.0.1:{port}")
        page.goto(address[1])
        page.get_by_text(handle["job_id"]).first.wait_for(timeout=60_000)  # the training run, listed
        page.get_by_text("Model registry").first.wait_for(timeout=10_000)  # the model-training view, not GenAI
        experiment = address[1].split("/experiments/")[1].split("/")[0]
        page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs/{handle['mlflow_run_id']}/artifacts")
        page.get_by_text("spec.json").first.wait_for(timeout=60_000)  # served from the copy's own artifacts
        page.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the command and the MLflow server it started
        server.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server's workers shut down after their parent
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        else:
            os.killpg(server.pid, signal.SIGKILL)
        away.rename(run)
