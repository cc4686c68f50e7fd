"""Console output end to end: a job on a real worker prints 100,000 lines, with Python's print
and a C library's printf; the run page shows them while it runs, in Chromium, and every line is
kept in order. A script's prints reach its run page too."""

import re

import pytest

from tests.conftest import wait_until
from tracker.core import console
from tracker.core.runs import create_run
from tracker.models import ConsoleChunk, Run

pytestmark = [pytest.mark.worker, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_job_printing_100000_lines_from_python_and_c_shows_them_live_and_in_order(
    reported_worker, live_server, page_as_user, user
):
    from tests.conftest import member_of

    member_of(user, "printing")
    config = {"job": "entry", "entry": "testjobs-printer", "params": {"lines": 100_000, "bursts": 10, "pause": 0.4}}
    run = create_run("printing", config, "prints", user)
    page = page_as_user
    wait_until(lambda: ConsoleChunk.objects.filter(run=run).exists(), 60, "the first lines")
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    assert Run.objects.get(pk=run.pk).status == "running"
    # the page follows the output while the job prints
    page.wait_for_function("document.querySelectorAll('#console-lines .line').length > 0")
    first = page.locator("#console-lines .line").last.inner_text()
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 120, "the printer to finish")
    page.wait_for_function(
        "document.querySelector('#console-lines .line:last-child')?.textContent.includes('line 99999 from c')",
        timeout=20_000,
    )
    assert page.locator("#console-lines .line").last.inner_text() != first
    done = Run.objects.get(pk=run.pk)
    assert done.status == "succeeded", done.error
    numbers = [
        int(match.group(1))
        for line in console.as_text(done)
        if (match := re.search(r" stdout line (\d+) from (python|c)$", line.rstrip("\n")))
    ]
    assert numbers == list(range(100_000))  # every line, once, in order, Python's and C's
    assert done.console_dropped == 0
    # the search finds a line among them
    page.fill("#console-search", "line 54321 from")
    page.wait_for_function("document.querySelectorAll('#console-lines .line').length === 1")
    assert "line 54321 from" in page.locator("#console-lines").inner_text()
    assert page.console_errors == []
