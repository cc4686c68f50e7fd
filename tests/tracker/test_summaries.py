"""Series summaries at several resolutions: exact under every kind of write, and a chart
answer of the same kind as downsampling every point (spikes and NaN kept)."""

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tracker.core.compare import comparison
from tracker.core.storage import (
    GROUP_COLUMNS,
    ChunkWriter,
    compact_series,
    read_downsampled,
    read_key_of_runs_downsampled,
    read_series,
    truncate_run,
)
from tracker.lib.downsample import min_max_downsample
from tracker.lib.summaries import GROUP_DTYPE, LEVELS, choose_level, downsample_groups, point_groups, summaries_of
from tracker.models import Project, Run, SeriesChunk

N = 2**20  # a million points: every level has groups once compacted
SPIKE, NAN = 123_457, 777_777


def planted(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n, dtype=np.int64)
    values = 2.3 * np.exp(-steps / 2e5) + rng.normal(0, 0.05, n)
    if n > SPIKE:
        values[SPIKE] = 50.0  # one step
    if n > NAN:
        values[NAN] = np.nan
    return steps, values


def assert_chart_answer(answer, steps, values, max_points):
    """What a chart needs: stored points only, both ends, the spike and the NaN, ~max_points."""
    shown_steps, shown_values = answer
    assert len(shown_steps) <= max_points + 4
    assert np.all(np.diff(shown_steps) > 0)
    index = np.searchsorted(steps, shown_steps)
    np.testing.assert_array_equal(steps[index], shown_steps)
    np.testing.assert_array_equal(values[index], shown_values)  # NaN == NaN here
    assert shown_steps[0] == steps[0] and shown_steps[-1] == steps[-1]
    for planted_step in (SPIKE, NAN):
        if steps[0] <= planted_step <= steps[-1]:
            assert planted_step in shown_steps


# --- pure logic -------------------------------------------------------------------------------


def test_groups_hold_each_group_s_first_last_lowest_highest_and_sums():
    steps, values = planted(1000)
    values[5] = -np.inf
    groups = np.frombuffer(summaries_of(steps, values)[0], GROUP_DTYPE)
    assert len(groups) == 8 and groups["count"].tolist() == [128] * 7 + [104]
    first = groups[0]
    assert (first["first_step"], first["last_step"], first["min_step"]) == (0, 127, 5)
    assert first["max_step"] == int(np.argmax(values[:128]))
    assert first["finite"] == 127 and first["sum"] == pytest.approx(np.sum(values[:128][np.isfinite(values[:128])]))
    assert summaries_of(steps[:100], values[:100]) == (None, None, None)  # too short to summarise


@pytest.mark.parametrize("max_points", [40, 500, 4000])
def test_downsampling_groups_keeps_what_downsampling_points_keeps(max_points):
    steps, values = planted()
    size = choose_level(N, max_points)
    groups = np.concatenate(
        [
            np.frombuffer(summaries_of(s, v)[LEVELS.index(size)], GROUP_DTYPE)
            for s, v in ((steps[i : i + 65536], values[i : i + 65536]) for i in range(0, N, 65536))
        ]
    )
    assert_chart_answer(downsample_groups(groups, max_points), steps, values, max_points)
    reference = min_max_downsample(steps, values, max_points)
    assert abs(len(downsample_groups(groups, max_points)[0]) - len(reference[0])) <= max_points // 4


def test_the_level_is_the_coarsest_with_enough_groups_and_short_ranges_read_points():
    assert [choose_level(N, m) for m in (40, 500, 4000, 200_000)] == [32768, 2048, 128, None]
    assert choose_level(8000, 1000) is None  # 8 points a chart point or fewer: the points
    assert downsample_groups(point_groups(np.arange(3), np.ones(3)), 1000)[0].tolist() == [0, 1, 2]


# --- stored -----------------------------------------------------------------------------------


@pytest.fixture
def run(db):
    return Run.objects.create(project=Project.objects.create(name="p"), config={})


def write_in_flushes(run_id, steps, values, flush=1000, key="loss"):
    writer = ChunkWriter(run_id)
    for start in range(0, len(steps), flush):
        writer.write({key: (steps[start : start + flush], values[start : start + flush])})
    return writer


def assert_summaries_exact(run_id, key="loss"):
    """Every chunk's stored summaries are those of its stored points."""
    for chunk in SeriesChunk.objects.filter(run_id=run_id, key=key):
        expected = summaries_of(np.frombuffer(chunk.steps, "<i8"), np.frombuffer(chunk.values, "<f8"))
        stored = tuple(None if getattr(chunk, c) is None else bytes(getattr(chunk, c)) for c in GROUP_COLUMNS)
        assert stored == expected, chunk


def levels_read(queries) -> set[int]:
    return {size for size in LEVELS for q in queries if f"groups_{size} FROM" in q["sql"]}


@pytest.mark.django_db
def test_summaries_stay_exact_through_retried_flushes_a_resume_and_compaction_and_every_level_shows_the_spike(run):
    steps, values = planted()
    writer = write_in_flushes(run.pk, steps, values)
    writer.high_water.clear()  # a flush retried after its success went unseen: nothing stored twice
    writer.write({"loss": (steps[5000:6000], values[5000:6000])})
    assert_summaries_exact(run.pk)
    with CaptureQueriesContext(connection) as queries:
        live = read_downsampled(run.pk, {"loss": None}, None, 1000)["loss"]
    assert levels_read(queries.captured_queries) == {128}  # flush-sized chunks have the finest level only
    assert len(queries.captured_queries) == 2
    assert_chart_answer(live, steps, values, 1000)

    # a resumed run: everything from a step inside a chunk on is measured again
    truncate_run(run.pk, 600_500)
    assert_summaries_exact(run.pk)
    write_in_flushes(run.pk, steps[600_500:], values[600_500:], flush=777)
    assert_summaries_exact(run.pk)
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], steps)

    compact_series(run.pk)
    assert_summaries_exact(run.pk)
    for max_points, size in ((40, 32768), (500, 2048), (4000, 128)):
        with CaptureQueriesContext(connection) as queries:
            answer = read_downsampled(run.pk, {"loss": None}, None, max_points)["loss"]
        assert levels_read(queries.captured_queries) == {size}
        assert not any("steps, values" in q["sql"] for q in queries.captured_queries)  # no point read
        assert_chart_answer(answer, steps, values, max_points)


@pytest.mark.django_db
def test_a_zoomed_range_reads_summaries_inside_and_points_at_its_edges(run):
    steps, values = planted()
    write_in_flushes(run.pk, steps, values, flush=65536)
    start, until = 100_000, 900_000  # cuts the first and the last chunk it touches
    with CaptureQueriesContext(connection) as queries:
        answer = read_downsampled(run.pk, {"loss": start - 1}, until, 1000)["loss"]
    # whole chunks inside by their summaries, the two cut ones by a slice of their points (found
    # from their finest groups; the slice itself goes through psycopg2's execute_values, unseen here)
    assert levels_read(queries.captured_queries) == {128, 2048}
    assert not any("SELECT id, steps, values" in q["sql"] for q in queries.captured_queries)
    inside = (steps >= start) & (steps <= until)
    assert_chart_answer(answer, steps[inside], values[inside], 1000)
    short = read_downsampled(run.pk, {"loss": 500_000}, 510_000, 1000)["loss"]  # 10,000 steps: the points
    np.testing.assert_array_equal(
        short[0], min_max_downsample(steps[500_001:510_001], values[500_001:510_001], 1000)[0]
    )


@pytest.mark.django_db
def test_a_comparison_and_sparklines_cost_the_same_queries_for_3_runs_as_for_12(run):
    project = Project.objects.create(name="many")
    runs = []
    for index in range(12):
        other = Run.objects.create(project=project, config={"optimizer": {"name": "sgd", "lr": 0.1 * (index + 1)}})
        steps = np.arange(20_000, dtype=np.int64)
        write_in_flushes(other.pk, steps, np.full(20_000, float(index)), flush=5000)
        write_in_flushes(other.pk, steps, np.full(20_000, 0.1), flush=5000, key="lr")
        runs.append(other)
    counts = []
    for chosen in (runs[:3], runs):
        with CaptureQueriesContext(connection) as queries:
            result = comparison(chosen, "loss", [], True, 400)
        counts.append(len(queries.captured_queries))
        assert [len(r["steps"]) <= 404 for r in result["runs"]] == [True] * len(chosen)
    assert counts[0] == counts[1]
    lines = read_key_of_runs_downsampled([r.pk for r in runs], "loss", 120)
    assert all(len(lines[r.pk][0]) <= 124 and lines[r.pk][1][0] == i for i, r in enumerate(runs))


@pytest.mark.django_db
def test_the_layers_heatmap_of_a_long_run_reads_summaries_and_matches_the_points(run):
    from tracker.core.layers import layer_matrix

    steps = np.arange(0, 5_000_000, 20, dtype=np.int64)  # a ratio every 20 steps of a 5M-step run
    ratios = 1e-3 * (1 + steps / 1e6)
    write_in_flushes(run.pk, steps, ratios, flush=65536, key="update_ratio/fc1.weight")
    run.tensors = ["fc1.weight"]
    with CaptureQueriesContext(connection) as queries:
        matrix = layer_matrix(run, "update_ratio", 100)
    assert levels_read(queries.captured_queries) == {2048}
    edges = np.linspace(0, steps[-1] + 1, 101)
    column = np.searchsorted(edges, steps, side="right") - 1
    expected = np.log10(np.bincount(column, weights=ratios) / np.bincount(column))
    np.testing.assert_allclose(matrix["values"][0], expected, atol=2e-3)  # every cell, none empty


@pytest.mark.django_db
def test_a_live_run_s_flush_chunks_are_rolled_up_into_summarised_ones_except_the_newest(run):
    from tracker.core.storage import roll_up_series
    from tracker.models import Series

    steps, values = planted(200_000)
    write_in_flushes(run.pk, steps, values, flush=1000)
    assert roll_up_series(run.pk) == 200 - 13  # 65 + 65 + 60 of the 190 older chunks merged
    counts = list(SeriesChunk.objects.filter(run=run).order_by("first_step").values_list("count", flat=True))
    assert counts == [65_000, 65_000, 60_000] + [1000] * 10
    assert roll_up_series(run.pk) == 0  # nothing more until more chunks come
    assert_summaries_exact(run.pk)
    np.testing.assert_array_equal(read_series(run.pk, "loss")[1], values)
    assert Series.objects.get(run=run, key="loss").count == 200_000
    with CaptureQueriesContext(connection) as queries:
        answer = read_downsampled(run.pk, {"loss": None}, None, 20)["loss"]
    assert levels_read(queries.captured_queries) == {32768, 128}  # the newest chunks have the finest only
    assert_chart_answer(answer, steps, values, 20)
