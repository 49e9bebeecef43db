"""Open each notebook in JupyterLab in headless Chromium, Run All, and save a screenshot of the result.

This is the trainee's view, checked for real: JupyterLab started as `make lab` starts it (outputs are
not saved into notebooks/), each notebook opened in a browser, Run All from the Run menu, then a
full-page screenshot once every cell has run. It prints, per notebook, how long Run All took, how many
cells ran, and any error output the page shows.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`) and selenium
(`.venv/bin/pip install selenium`); neither is a dependency of the kit.

Usage: .venv/bin/python scripts/screenshot_jupyterlab.py [--out reports/screenshots] [NOTEBOOK ...]
"""

from __future__ import annotations

import argparse
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lab_command(port: int, token: str) -> list[str]:
    """`make lab`'s own command line (read from the Makefile), headless, on ``port``."""
    lines = (ROOT / "Makefile").read_text().split("\nlab:", 1)[1].splitlines()[1:]
    recipe = []
    for line in lines:  # the recipe's first line and its backslash continuations
        recipe.append(line.strip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            break
    args = " ".join(recipe).replace("$(BIN)/", f"{BIN}/").split()
    return [*args, "--no-browser", f"--port={port}", f"--IdentityProvider.token={token}"]


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def run_all(driver, url: str, timeout: float = 180) -> dict:
    """Open ``url``, Run All, wait until the kernel is idle and no cell is pending; what the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
    wait.until(lambda d: "Idle" in d.find_element(By.CSS_SELECTOR, "#jp-main-statusbar").text)
    time.sleep(2)  # the kernel connects after the page renders
    started = time.monotonic()
    driver.find_element(By.XPATH, "//li[contains(@class,'lm-MenuBar-item')][.//div[text()='Run']]").click()
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "li[data-command='runmenu:run-all']"))).click()

    def finished(d) -> bool:
        prompts = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".jp-InputPrompt")]
        return (
            bool(prompts) and not any("*" in p for p in prompts) and any(re.search(r"\d", p) for p in prompts)
        )

    time.sleep(1)
    wait.until(finished)
    seconds = time.monotonic() - started
    errors = [
        e.text.splitlines()[0]
        for e in driver.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']")
        if e.text
    ]
    ran = sum(
        bool(re.search(r"\d", e.text)) for e in driver.find_elements(By.CSS_SELECTOR, ".jp-InputPrompt")
    )
    return {"seconds": seconds, "cells_ran": ran, "errors": errors}


def _screenshots(driver, folder: Path, *, most: int = 12) -> list[Path]:
    """Scroll the notebook from the top, a screen at a time, saving each screen as NN.png."""
    folder.mkdir(parents=True, exist_ok=True)
    panel = (  # the notebook's scrolling element, whatever JupyterLab's version calls it
        "[...document.querySelectorAll('.jp-NotebookPanel *')]"
        ".find(e => e.scrollHeight > e.clientHeight + 50 && getComputedStyle(e).overflowY !== 'visible')"
    )
    driver.execute_script(f"{panel}.scrollTop = 0")
    shots = []
    for number in range(most):
        time.sleep(0.4)
        shots.append(folder / f"{number:02d}.png")
        driver.save_screenshot(str(shots[-1]))
        at, height, total = driver.execute_script(
            f"const p = {panel}; return [p.scrollTop, p.clientHeight, p.scrollHeight]"
        )
        if at + height >= total - 2:
            break
        driver.execute_script(f"{panel}.scrollTop = {at + height - 40}")
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook file names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "screenshots"), help="where the PNGs go")
    args = parser.parse_args()
    names = args.notebooks or sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        _lab_command(port, token), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        driver = _browser()
        try:
            for name in names:
                result = run_all(driver, f"http://127.0.0.1:{port}/lab/tree/notebooks/{name}?token={token}")
                shots = _screenshots(driver, out / Path(name).stem)
                errors = result["errors"] or "none"
                print(f"{name}: Run All {result['seconds']:.1f} s, {result['cells_ran']} cells ran, "
                      f"errors shown: {errors}; {len(shots)} screenshots in {shots[0].parent}")  # fmt: skip
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "notebooks"], cwd=ROOT, capture_output=True, text=True
    )
    print("notebooks/ after the session:", dirty.stdout.strip() or "clean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
