"""A run's console output: stored in order in chunks, capped with a mark, read back as the
page asks (the tail, what came after, a search), downloaded, and reached by the run's project
only; a script's output arrives in its payloads."""

import pytest

from tests.conftest import member_of
from tracker.core import console
from tracker.models import ApiToken, ConsoleChunk, Run
from trainer.wire import Payload, encode

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(user):
    return Run.objects.create(project=member_of(user, "c"), name="printer", config={}, status="running")


def lines(first, count, stream="stdout"):
    return [(1000.0 + n, stream, f"line {n}") for n in range(first, first + count)]


def test_lines_are_kept_in_order_in_a_chunk_per_run_of_one_stream(run):
    console.append(run.pk, lines(0, 3) + lines(3, 2, "stderr") + lines(5, 1))
    console.append(run.pk, lines(6, 2))
    chunks = list(ConsoleChunk.objects.filter(run=run).values_list("seq", "stream", "text"))
    assert chunks == [
        (1, "stdout", "line 0\nline 1\nline 2"),
        (2, "stderr", "line 3\nline 4"),
        (3, "stdout", "line 5"),
        (4, "stdout", "line 6\nline 7"),
    ]
    run.refresh_from_db()
    answer = console.read(run, tail=3)
    assert [line[3] for line in answer["lines"]] == ["line 5", "line 6", "line 7"] and answer["last"] == 4
    assert [line[3] for line in console.read(run, after=2)["lines"]] == ["line 5", "line 6", "line 7"]
    found = console.read(run, query="LINE 4")
    assert [(line[2], line[3]) for line in found["lines"]] == [("stderr", "line 4")]
    text = "".join(console.as_text(run)).splitlines()
    assert len(text) == 8 and text[0].endswith("stdout line 0") and text[3].endswith("stderr line 3")


def test_past_the_cap_a_mark_is_left_once_and_the_rest_counted(run, settings):
    settings.TRAINWATCH_CONSOLE_MAX_BYTES = 50  # "line N\n" is 7 bytes: 7 lines fit
    console.append(run.pk, lines(0, 10))
    console.append(run.pk, lines(10, 5))
    run.refresh_from_db()
    kept = [line[3] for line in console.read(run, tail=100)["lines"]]
    assert kept[:7] == [f"line {n}" for n in range(7)] and len(kept) == 8
    assert kept[7].startswith("[output cut here: the run printed more than 50 bytes")
    assert run.console_bytes == 49 and run.console_dropped == 3 * 7 + 5 * 8
    assert "".join(console.as_text(run)).endswith(
        f"[{run.console_dropped:,} bytes of output past the cap were not kept]\n"
    )


def test_the_page_and_the_api_show_it_to_the_runs_project_only(client, user, run, django_user_model):
    console.append(run.pk, lines(0, 3))
    client.force_login(user)
    assert [line[3] for line in client.get(f"/api/runs/{run.pk}/console/?tail=2").json()["lines"]] == [
        "line 1",
        "line 2",
    ]
    download = client.get(f"/runs/{run.pk}/console.txt")
    assert b"line 2" in b"".join(download.streaming_content)
    assert client.get(f"/api/runs/{run.pk}/console/?after=x").status_code == 400
    assert 'id="console-lines"' in client.get(f"/runs/{run.pk}/").content.decode()
    client.force_login(django_user_model.objects.create_user("mallory", password="x"))
    assert client.get(f"/api/runs/{run.pk}/console/").status_code == 404
    assert client.get(f"/runs/{run.pk}/console.txt").status_code == 404


def test_a_failed_runs_last_lines_sit_beside_its_traceback(client, user, run):
    console.append(run.pk, [*lines(0, 40), (2000.0, "stderr", "CUDA error: out of memory")])
    Run.objects.filter(pk=run.pk).update(status="failed", error="Traceback (most recent call last): ...")
    client.force_login(user)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    last = page[page.index('id="last-lines"') :]
    assert "CUDA error: out of memory" in last and "line 39" in last and "line 5\n" not in last


def test_a_scripts_output_arrives_in_its_payloads(client, user):
    from tracker.core.external import start_external_run

    run, _ = start_external_run("c", "script", {}, [], {}, "client-0001", user)
    token = ApiToken.issue(user, "t")[1]
    payload = Payload(0, console=[(1000.0, "stdout", "epoch 1: loss 2.3"), (1001.0, "stderr", "warning: slow")])
    answer = client.post(
        f"/api/runs/{run.pk}/ingest/",
        encode(payload),
        content_type="application/octet-stream",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 200
    run.refresh_from_db()
    assert [(line[2], line[3]) for line in console.read(run)["lines"]] == [
        ("stdout", "epoch 1: loss 2.3"),
        ("stderr", "warning: slow"),
    ]
    bad = encode(Payload(1, console=[(1000.0, "stdout", "ok")])).replace(b'"stdout"', b'"stdin!"')
    refused = client.post(
        f"/api/runs/{run.pk}/ingest/",
        bad,
        content_type="application/octet-stream",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert (
        refused.status_code == 400
        and "console[0]: the stream must be one of stdout, stderr" in refused.json()["errors"]["payload"]
    )
