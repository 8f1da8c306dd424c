"""What following a 10,000-recipient message costs the browser tab of ``/testSocket``.

The hub runs with its production settings (SQLite, the simulated provider) on
CPU 0; Debian's Chromium, headless, on CPU 1, opens ``/testSocket``, signs in
with a token, connects and tracks one message of ``--recipients`` from its
creation until every recipient has its final status on the page. The page
tracks batched (``recipient_updates``), keeps its counts per status and a
virtualised recipient table.

The tab's cost is read from Chromium itself: the renderer's main-thread task
time (DevTools ``Performance.getMetrics``: ``TaskDuration``, of which
``ScriptDuration`` runs JavaScript and ``LayoutDuration`` lays out) and the
CPU time of every renderer process (``SystemInfo.getProcessInfo``), from the
moment the message is created to its last count. Issue 21's goal: under 5 s
of CPU in all for the tab.

    python -m bench.browser_tab [--recipients 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import requests

from bench.run import (
    HUB_ENV,
    ROOT,
    SECRET,
    WORK,
    machine,
    prepare_hub_database,
    short_commit,
    write_section,
)
from bench.soak import wait_for_port

MARKER = "<!-- bench/browser_tab.py results -->"
PORT = 7143
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
FINAL = "() => { const c = Object.fromEntries([...document.querySelectorAll(" \
        "'#recipient-counts [data-count-status]')].map(e => [e.dataset.countStatus, " \
        "Number(e.querySelector('strong').textContent)])); return c.DELIVERED + c.FAILED; }"


def _renderer_cpu(browser_session) -> float:
    """CPU seconds of every renderer process of the browser (the tab's)."""
    processes = browser_session.send("SystemInfo.getProcessInfo")["processInfo"]
    return sum(p["cpuTime"] for p in processes if p["type"] == "renderer")


def _main_thread(page_session) -> dict[str, float]:
    metrics = page_session.send("Performance.getMetrics")["metrics"]
    return {m["name"]: m["value"] for m in metrics
            if m["name"] in ("TaskDuration", "ScriptDuration", "LayoutDuration")}


def one_round(playwright, recipients: int) -> dict:
    url = f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db"
    token = prepare_hub_database(url, 1)["users"][0]["token"]
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(ROOT / "app.py")], cwd=ROOT,
        env={**os.environ, **HUB_ENV, "DATABASE_URL": url, "PORT": str(PORT),
             "JWT_SECRET_KEY": SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        wait_for_port(PORT)
        base = f"http://127.0.0.1:{PORT}"
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=LAUNCH_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(f"{base}/testSocket")
        page.fill("#token", token)
        page.click("#use-token-btn")
        page.click("#connect-btn")
        page.wait_for_selector("#conn-state[data-state='connected']")
        page_session = page.context.new_cdp_session(page)
        page_session.send("Performance.enable")
        browser_session = browser.new_browser_cdp_session()
        page.wait_for_timeout(1000)
        thread_before, cpu_before = _main_thread(page_session), _renderer_cpu(browser_session)
        started = time.monotonic()
        created = requests.post(
            f"{base}/api/messages", headers={"Authorization": f"Bearer {token}"}, timeout=60,
            json={"body": "bench", "recipients": [f"+1555{i:07d}" for i in range(recipients)]})
        created.raise_for_status()
        page.fill("#message-id", created.json()["id"])
        page.click("#track-btn")
        page.wait_for_function(f"() => ({FINAL})() === {recipients}", timeout=600_000,
                               polling=250)
        wall = time.monotonic() - started
        thread_after, cpu_after = _main_thread(page_session), _renderer_cpu(browser_session)
        rows = page.locator("#recipients-table tbody tr").count()
        result = {"wallSeconds": wall, "rendererCpu": cpu_after - cpu_before,
                  **{name: thread_after[name] - thread_before[name] for name in thread_after},
                  "rowsInDom": rows, "connects": page.get_attribute("#conn-state",
                                                                    "data-connects")}
        print(json.dumps(result), file=sys.stderr)
        return result
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        server.wait(timeout=20)


def report(rounds: list[dict], recipients: int, commit: str) -> str:
    def cell(name: str) -> str:
        values = [r[name] for r in rounds]
        return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"

    return "\n".join([
        MARKER,
        f"## The browser tab following {recipients:,} recipients "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit})",
        "",
        f"Machine: {machine()}. Hub with its production settings (SQLite, the simulated "
        "provider) on CPU 0, Debian's Chromium headless on CPU 1 with `/testSocket` tracking "
        f"one message of {recipients:,} recipients (batched) from its creation until every "
        "recipient's final status is counted on the page. From Chromium's DevTools: the "
        "renderer's main-thread task time (`Performance.getMetrics`) and the CPU time of its "
        f"renderer processes (`SystemInfo.getProcessInfo`). {len(rounds)} rounds; median "
        "(lowest–highest).",
        f"Command: `python -m bench.browser_tab --recipients {recipients} "
        f"--rounds {len(rounds)}`.", "",
        "| figure | seconds |", "| --- | --- |",
        f"| renderer processes' CPU | {cell('rendererCpu')} |",
        f"| main-thread tasks | {cell('TaskDuration')} |",
        f"| of which JavaScript | {cell('ScriptDuration')} |",
        f"| of which layout | {cell('LayoutDuration')} |",
        f"| wall, creation to last count | {cell('wallSeconds')} |",
        "",
        f"Recipient rows in the DOM at the end: {max(r['rowsInDom'] for r in rounds)}; "
        f"socket connections per round: {sorted({r['connects'] for r in rounds})}.",
        MARKER])


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # Chromium, started from here, inherits CPU 1
    WORK.mkdir(parents=True, exist_ok=True)
    commit = short_commit()
    with sync_playwright() as playwright:
        rounds = [one_round(playwright, args.recipients) for _ in range(args.rounds)]
    section = report(rounds, args.recipients, commit)
    if not args.no_write:
        write_section(MARKER, section)
    print(section)


if __name__ == "__main__":
    main()
