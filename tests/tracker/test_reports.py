"""Reports: blocks validated whole, saved as versions, restored; block data read as a member or
through a share link, which opens that report and nothing else; Markdown sanitised."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from tests.conftest import lr_finding, member_of
from tracker.core import reports
from tracker.core.markdown import TAGS, render
from tracker.core.storage import ChunkWriter
from tracker.models import Project, Report, Run, RunImage, Study

pytestmark = pytest.mark.django_db


def make_run(project, optimizer="adam", seed=0, steps=30, status="succeeded", study=None):
    config = {"optimizer": {"name": optimizer, "lr": 0.01}, "seed": seed, "epochs": 3}
    run = Run.objects.create(
        project=project,
        name=f"{optimizer}-{seed}",
        config=config,
        status=status,
        steps_per_epoch=10,
        steps_done=steps,
        study=study,
        findings=[lr_finding()],
    )
    values = np.linspace(2.0, 0.5, steps) + seed * 0.01
    ChunkWriter(run.pk).write({"loss": (np.arange(steps), values)})
    return run


def post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def put(client, url, body):
    return client.put(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def team(logged_in, user):
    project = member_of(user, "vision")
    runs = [make_run(project, optimizer, seed) for optimizer in ("adam", "sgd") for seed in (0, 1)]
    return project, runs


def chart(ids, **fields):
    return {"type": "chart", "select": {"runs": ids}, "metric": "loss", "group": ["optimizer.name"], **fields}


def test_a_report_is_made_with_blocks_and_every_change_is_a_version_that_can_be_restored(logged_in, user, team):
    _, runs = team
    made = post(
        logged_in,
        "/api/reports/",
        {
            "project": "vision",
            "title": "Optimizers",
            "blocks": [{"type": "markdown", "text": "# Why"}, chart([r.pk for r in runs])],
        },
    )
    assert made.status_code == 201, made.content
    report = made.json()
    assert report["version"] == 1 and [b["type"] for b in report["blocks"]] == ["markdown", "chart"]
    assert all(len(b["id"]) == 8 for b in report["blocks"])  # the server names blocks
    url = f"/api/reports/{report['id']}/"
    edited = put(logged_in, url, {"title": "Optimizers, seeds", "version": 1, "blocks": report["blocks"][1:]})
    assert edited.status_code == 200 and edited.json()["version"] == 2
    stale = put(logged_in, url, {"title": "late", "version": 1})
    assert stale.status_code == 409 and "reload" in stale.json()["errors"]["version"]
    assert post(logged_in, f"{url}versions/1/restore/", {}).json()["version"] == 3
    restored = logged_in.get(url).json()
    assert restored["title"] == "Optimizers" and [b["type"] for b in restored["blocks"]] == ["markdown", "chart"]
    versions = logged_in.get(f"{url}versions/").json()["versions"]
    assert [(v["number"], v["author"], v["what"]) for v in versions] == [
        (3, "alice", "restored version 1"),
        (2, "alice", "edited"),
        (1, "alice", "created"),
    ]
    history = logged_in.get(f"/reports/{report['id']}/history/")
    assert history.status_code == 200 and b"restored version 1" in history.content


@pytest.mark.parametrize(
    ("blocks", "field", "says"),
    [
        ("nope", "blocks", "list of blocks"),
        ([{"type": "poem"}], "blocks[0]", "does not match any of the expected tags"),
        ([{"type": "markdown", "text": "ok"}, {"type": "chart", "select": {}}], "blocks[1].select", "name the runs"),
        ([{"type": "chart", "select": {"runs": [1]}, "metric": "loss; drop"}], "blocks[0].metrics[0]", "pattern"),
        (
            [{"type": "chart", "select": {"runs": [1]}, "metrics": ["a", "b", "c", "d", "e"]}],
            "blocks[0].metrics",
            "at most 4",
        ),
        ([{"type": "chart", "select": {"runs": [1]}, "metric": "a", "metrics": ["b"]}], "blocks[0]", "not both"),
        ([{"type": "chart", "select": {"runs": [1]}, "x": "time"}], "blocks[0].x", "'step', 'epoch' or 'wall'"),
        ([{"type": "chart", "select": {"runs": [1]}, "smoothing": 2}], "blocks[0].smoothing", "less than or equal"),
        ([{"type": "runs", "select": {"study": 1}, "sort": "-password"}], "blocks[0].sort", "must be one of"),
        ([{"type": "runs", "select": {"filter": {"owner": "x"}}}], "blocks[0].select.filter", "unknown filter owner"),
        ([{"type": "markdown", "text": "x", "onload": "y"}], "blocks[0].onload", "Extra inputs"),
        ([{"type": "markdown", "id": "a"}, {"type": "markdown", "id": "a"}], "blocks[1].id", "another block"),
        ([{"type": "leaderboard", "study": "1"}], "blocks[0].study", "valid integer"),
    ],
)
def test_a_malformed_block_is_refused_naming_the_block_and_field_and_nothing_is_saved(
    logged_in, team, blocks, field, says
):
    answer = post(logged_in, "/api/reports/", {"project": "vision", "title": "t", "blocks": blocks})
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert field in errors and says in errors[field], errors
    assert not Report.objects.exists()


def test_a_report_goes_only_into_a_project_of_its_author(logged_in, team):
    Project.objects.create(name="theirs")
    answer = post(logged_in, "/api/reports/", {"project": "theirs", "title": "t", "blocks": []})
    assert answer.status_code == 400 and "one of your projects" in answer.json()["errors"]["project"]
    assert post(logged_in, "/api/reports/", {"project": "vision", "title": " ", "blocks": []}).json()["errors"] == {
        "title": "must be non-empty text"
    }


def test_a_chart_block_reads_its_query_live_and_a_frozen_one_keeps_its_runs_and_last_step(logged_in, user, team):
    project, runs = team
    study = Study.objects.create(project=project, name="opt", kind="grid", spec={})
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(study=study)
    report = reports.create_report(
        project,
        "r",
        [chart(None, select={"study": study.pk}, id="live"), chart(None, select={"study": study.pk}, id="cold")],
        user,
    )
    reports.freeze(report, "cold", user, True)
    report.refresh_from_db()
    assert report.blocks[1]["frozen"]["runs"] == [r.pk for r in runs] and report.blocks[1]["frozen"]["step"] == 29
    # a new run joins the study and the old runs go on training
    newcomer = make_run(project, "rmsprop", 0, steps=60, status="running", study=study)
    ChunkWriter(runs[0].pk).write({"loss": (np.arange(30, 50), np.full(20, 0.4))})
    live = logged_in.get(f"/api/reports/{report.pk}/blocks/live/").json()
    cold = logged_in.get(f"/api/reports/{report.pk}/blocks/cold/").json()
    assert newcomer.pk in [r["id"] for r in live["runs"]] and live["live"] is True
    ((live_loss,), (cold_loss,)) = (live["series"], cold["series"])
    assert "rmsprop" in " ".join(live_loss["groups"])
    assert [r["id"] for r in cold["runs"]] == [r.pk for r in runs] and cold["live"] is False
    assert (
        max(max(r["steps"]) for r in cold_loss["runs"]) == 29
        and max(max(b["steps"]) for b in cold_loss["groups"].values()) <= 29
    )
    assert max(live_loss["runs"][0]["steps"]) == 49


def test_a_block_naming_runs_the_viewer_cannot_see_says_so_without_naming_them(logged_in, user, team):
    project, runs = team
    theirs = make_run(Project.objects.create(name="secret-project"), "lion", 7)
    deleted = make_run(project, "gone", 3)
    deleted_id = deleted.pk
    deleted.delete()
    report = reports.create_report(project, "r", [chart([runs[0].pk, theirs.pk, deleted_id], id="c")], user)
    data = logged_in.get(f"/api/reports/{report.pk}/blocks/c/").json()
    assert [r["id"] for r in data["runs"]] == [runs[0].pk]
    assert data["missing"].startswith("2 runs of this block are not available")
    text = json.dumps(data)
    assert "lion" not in text and "secret-project" not in text and str(theirs.pk) not in data["missing"]


def test_every_block_type_reads_its_data(logged_in, user, team):
    project, runs = team
    study = Study.objects.create(project=project, name="opt", kind="grid", spec={"choices": {}, "seeds": 1})
    ids = [r.pk for r in runs]
    blocks = [
        {
            "type": "runs",
            "id": "t",
            "select": {"runs": ids},
            "columns": ["name", "optimizer", "final_loss"],
            "sort": "name",
        },
        {"type": "config_diff", "id": "d", "select": {"runs": ids}},
        {"type": "findings", "id": "f", "select": {"filter": {"optimizer": "sgd"}}},
        {"type": "markdown", "id": "m", "text": "**bold** <script>alert(1)</script>"},
    ]
    report = reports.create_report(project, "r", blocks, user)
    table = logged_in.get(f"/api/reports/{report.pk}/blocks/t/").json()
    assert [row["cells"][0] for row in table["rows"]] == ["adam-0", "adam-1", "sgd-0", "sgd-1"]
    diff = logged_in.get(f"/api/reports/{report.pk}/blocks/d/").json()
    assert set(diff["diff"]) == {"optimizer.name", "seed"}
    found = logged_in.get(f"/api/reports/{report.pk}/blocks/f/").json()
    assert [r["name"] for r in found["runs"]] == ["sgd-0", "sgd-1"]
    assert found["runs"][0]["findings"][0]["evidence"] == "update ratio 3e-2 on fc1 since step 4"
    markdown = logged_in.get(f"/api/reports/{report.pk}/blocks/m/").json()
    assert markdown["html"].startswith("<p><strong>bold</strong> &lt;script&gt;")
    assert study.pk  # a leaderboard of a study without a summary-able spec is the study page's business


def test_a_share_link_opens_its_report_and_nothing_else_and_a_revoked_one_answers_404(client, logged_in, user, team):
    project, runs = team
    other = reports.create_report(project, "other", [chart([runs[1].pk], id="o")], user)
    theirs = make_run(Project.objects.create(name="secret-project"), "lion", 7)
    report = reports.create_report(project, "shared", [chart([runs[0].pk, theirs.pk], id="c")], user)
    assert logged_in.post(f"/reports/{report.pk}/share/").status_code == 302
    token = Report.objects.get(pk=report.pk).share_token
    assert len(token) >= 32
    logged_in.logout()
    page = client.get(f"/shared/{token}/")
    assert page.status_code == 200 and b"shared" in page.content
    data = client.get(f"/api/shared/{token}/blocks/c/").json()
    # its own project's run only, even where a block names another project's run its author sees
    assert [r["id"] for r in data["runs"]] == [runs[0].pk] and "1 run" in data["missing"]
    assert client.get(f"/api/shared/{token}/blocks/o/").status_code == 404  # another report's block
    for url in (
        f"/api/runs/{runs[0].pk}/",
        f"/api/runs/{runs[0].pk}/series/?keys=loss",
        f"/api/compare/?runs={runs[0].pk}",
        f"/api/reports/{report.pk}/",
        f"/api/reports/{other.pk}/",
        f"/api/reports/{report.pk}/blocks/c/",
        "/api/reports/",
        "/api/runs/",
        "/api/studies/",
    ):
        for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {token}"}):
            answer = client.get(url, **headers)
            assert answer.status_code == 401, (url, headers, answer.status_code)
    for url in (f"/runs/{runs[0].pk}/", f"/reports/{report.pk}/", f"/reports/{other.pk}/", "/runs/", "/studies/"):
        assert client.get(url).status_code == 302  # to the login
    client.force_login(user)
    client.post(f"/reports/{report.pk}/share/", {"revoke": "1"})
    client.logout()
    assert client.get(f"/shared/{token}/").status_code == 404
    assert client.get(f"/api/shared/{token}/blocks/c/").status_code == 404
    assert client.get(f"/shared/{token}/blocks/c/").status_code == 404


def test_the_embed_view_may_be_framed_and_nothing_else_may(client, logged_in, user, team):
    project, runs = team
    report = reports.create_report(project, "r", [chart([runs[0].pk], id="c")], user)
    token = reports.new_share_token(report)
    embed = client.get(f"/shared/{token}/blocks/c/")
    assert embed.status_code == 200 and "X-Frame-Options" not in embed.headers
    assert "frame-ancestors *" in embed.headers["Content-Security-Policy"]
    page = client.get(f"/shared/{token}/")
    assert (
        page.headers["X-Frame-Options"] == "DENY"
        and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    )


def test_the_html_export_holds_every_blocks_data_and_its_scripts(logged_in, user, team):
    project, runs = team
    report = reports.create_report(
        project, "Export me", [{"type": "markdown", "text": "# Title"}, chart([r.pk for r in runs], id="c")], user
    )
    answer = logged_in.get(f"/reports/{report.pk}/export.html")
    assert answer.status_code == 200 and 'filename="export-me.html"' in answer.headers["Content-Disposition"]
    html = answer.content.decode()
    assert "<h1>Title</h1>" in html and "<script src=" not in html and '<link rel="stylesheet"' not in html
    data = json.loads(html.split('<script id="report-data" type="application/json">')[1].split("</script>")[0])
    assert len(data["embedded"]["c"]["runs"]) == 4


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "![x](javascript:alert(1))",
        '<img src=x onerror="alert(1)">',
        "<iframe src='https://example.com'></iframe>",
        '<a href="#" onclick="alert(1)">x</a>',
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<svg onload=alert(1)>",
        "`<script>` and <style>body{}</style>",
    ],
)
def test_markdown_keeps_no_script_handler_javascript_link_or_frame(text):
    # what is left may mention them as text; as elements and attributes, none survives
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Elements(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Elements().feed(render(text))
    for tag, attrs in found:
        assert tag in TAGS, (text, tag)
        for name, value in attrs:
            assert not name.startswith("on"), (text, name)
            if name in ("href", "src"):
                assert (value or "").split(":")[0].lower() in ("http", "https", "mailto") or ":" not in (value or ""), (
                    text
                )


def test_the_markdown_export_refuses_what_is_not_a_png_of_one_of_its_charts(logged_in, user, team):
    project, runs = team
    report = reports.create_report(
        project, "r", [chart([runs[0].pk], id="c"), {"type": "markdown", "id": "m", "text": "x"}], user
    )
    url = f"/reports/{report.pk}/export.md.zip"
    for images, field, says in (
        ({"m": "data:image/png;base64,AAAA"}, "images.m", "not a chart, heatmap or image block"),
        ({"c": "data:text/html;base64,PHNjcmlwdD4="}, "images.c", "data:image/png;base64"),
        ({"c": "data:image/png;base64,!!!"}, "images.c", "not valid base64"),
        ({"c": "data:image/png;base64,R0lGODlhAQABAAAAACw="}, "images.c", "not a PNG"),
        ([], "images", "must be an object"),
    ):
        answer = post(logged_in, url, {"images": images})
        assert answer.status_code == 400 and says in answer.json()["errors"][field], (images, answer.content)
    answer = post(logged_in, url, {"images": {}})
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"


@pytest.mark.parametrize(
    ("written", "exported"),
    [
        ("<script>alert(1)</script>", "\\<script>alert(1)\\</script>"),
        ("[x](javascript:alert(1))", "[x](#removed-link))"),
        ("![x](DATA:text/html,x)", "![x](#removed-link)"),
        ("[ok](https://example.com) and [run](/runs/3/) and <https://example.com>", None),
        ("`<b>` stays code\n```\n<div onclick=x>\n```", None),
    ],
)
def test_a_text_block_is_exported_as_written_with_what_could_run_disarmed(written, exported):
    from tracker.core.markdown import inert

    assert inert(written) == (written if exported is None else exported)


def test_the_dashboard_shows_the_latest_report_changes_of_your_projects_only(logged_in, user, team):
    project, _ = team
    mine = reports.create_report(project, "Mine to read", [], user)
    reports.save_report(mine, user, title="Mine, renamed", what="renamed")
    reports.create_report(Project.objects.create(name="theirs"), "Not yours", [], None)
    page = logged_in.get("/").content.decode()
    panel = page.split('id="panel-reports"')[1].split("</section>")[0]
    assert "Mine, renamed" in panel and "renamed" in panel and "alice" in panel and "Not yours" not in panel
    assert "Mine, renamed" in logged_in.get("/api/dashboard/").json()["panels"]["reports"]


def test_with_a_share_token_no_other_route_reads_anything(client, logged_in, user, team):
    # every route of the site, its ids filled with this project's and another's objects, asked
    # with the token as a bearer token, as a cookie-less visitor and with the token in the path
    from django.urls import URLPattern, URLResolver, get_resolver

    project, runs = team
    theirs = make_run(Project.objects.create(name="secret-project"), "lion", 7)
    study = Study.objects.create(project=project, name="s", kind="grid", spec={})
    report = reports.create_report(project, "shared", [chart([runs[0].pk], id="c")], user)
    other = reports.create_report(theirs.project, "other", [chart([theirs.pk], id="o")], None)
    token = reports.new_share_token(report)
    logged_in.logout()

    def patterns(resolver, prefix=""):
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                if str(entry.pattern).startswith("admin/"):
                    continue  # the admin's own login guards it (tested in test_access)
                yield from patterns(entry, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                yield prefix + str(entry.pattern)

    shared_routes = {
        "shared/<str:token>/",
        "shared/<str:token>/blocks/<str:block_id>/",
        "api/shared/<str:token>/blocks/<str:block_id>/",
    }
    public = {
        "healthz",
        "favicon.ico",
        "accounts/login/",
        "accounts/logout/",
        "accounts/password_reset/",
        "accounts/password_reset/done/",
        "accounts/reset/<uidb64>/<token>/",
        "accounts/reset/done/",
    }
    tried = 0
    for route in patterns(get_resolver()):
        if route in public or route.startswith("accounts/password_change"):
            continue
        for ids in ((runs[0].pk, report.pk, study.pk), (theirs.pk, other.pk, study.pk)):
            path = "/" + route
            for name, value in (
                ("<int:run_id>", ids[0]),
                ("<int:report_id>", ids[1]),
                ("<int:study_id>", ids[2]),
                ("<int:artifact_id>", 1),
                ("<int:version_id>", 1),
                ("<int:project_id>", project.pk),
                ("<int:token_id>", 1),
                ("<int:step>", 0),
                ("<int:number>", 1),
                ("<str:digest>", "0" * 64),
                ("<str:name>", "production"),
                ("<path:path>", "a.txt"),
                ("<str:token>", token),
                ("<str:block_id>", "c" if ids[1] == report.pk else "o"),
            ):
                path = path.replace(name, str(value))
            assert "<" not in path, path
            for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {token}"}):
                answer = client.get(path, **headers)
                tried += 1
                if route == "shared/<str:token>/" or (route in shared_routes and ids[1] == report.pk):
                    assert answer.status_code == 200, (path, answer.status_code)  # its own report, only
                else:
                    # a login asked for (401, or a redirect to the login page), or nothing there
                    assert answer.status_code in (401, 404, 405) or (
                        answer.status_code == 302 and "/accounts/login/" in answer["Location"]
                    ), (path, headers, answer.status_code)
                    assert b"secret-project" not in answer.content and b"lion" not in answer.content, path
    assert tried > 150


def test_a_runs_layers_and_first_layer_blocks_read_its_heatmap_and_images_at_the_steps_asked(logged_in, user, team):
    project, runs = team
    run = runs[0]
    Run.objects.filter(pk=run.pk).update(tensors=["fc1.weight", "fc2.weight"])
    ChunkWriter(run.pk).write(
        {f"update_ratio/{name}": (np.arange(0, 30, 5), np.full(6, 1e-3)) for name in ("fc1.weight", "fc2.weight")}
    )
    for step in (0, 10, 20):
        RunImage.objects.create(run=run, key="first_layer", step=step, height=2, width=2, channels=1, pixels=bytes(4))
    report = reports.create_report(
        project,
        "r",
        [
            {"type": "layers", "id": "h", "run": run.pk},
            {"type": "first_layer", "id": "i", "run": run.pk, "steps": [0, 15, 99]},
            {"type": "first_layer", "id": "latest", "run": run.pk},
        ],
        user,
    )
    heatmap = logged_in.get(f"/api/reports/{report.pk}/blocks/h/").json()
    assert heatmap["rows"] == ["fc1.weight", "fc2.weight"] and heatmap["log10"] is True
    assert heatmap["values"][0][0] == pytest.approx(-3) and heatmap["thresholds"]["ratio_low"] > 0
    images = logged_in.get(f"/api/reports/{report.pk}/blocks/i/").json()["images"]
    assert [(image["asked"], image["step"]) for image in images] == [(0, 0), (15, 10), (99, 20)]
    assert [image["step"] for image in logged_in.get(f"/api/reports/{report.pk}/blocks/latest/").json()["images"]] == [
        20
    ]
    reports.freeze(report, "latest", user, True)
    RunImage.objects.create(run=run, key="first_layer", step=40, height=2, width=2, channels=1, pixels=bytes(4))
    frozen = logged_in.get(f"/api/reports/{report.pk}/blocks/latest/").json()["images"]
    assert [image["step"] for image in frozen] == [20]  # run.steps_done is 30: frozen at step 29
    bad = post(
        logged_in,
        "/api/reports/",
        {"project": "vision", "title": "t", "blocks": [{"type": "layers", "run": 1, "quantity": "vibes"}]},
    )
    assert "blocks[0].quantity" in bad.json()["errors"]


@pytest.mark.parametrize(
    "source", ["javascript:alert(1)", "//evil.example/x", "/\\\\evil.example/x", "https://evil.example/", "/runs/ 1"]
)
def test_a_blocks_source_is_a_path_of_this_site(logged_in, team, source):
    answer = post(
        logged_in, "/api/reports/", {"project": "vision", "title": "t", "blocks": [chart([1], source=source)]}
    )
    assert answer.status_code == 400 and "blocks[0].source" in answer.json()["errors"]
