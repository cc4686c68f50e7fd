import numpy as np

from tracker.lib.downsample import min_max_downsample


def test_a_short_series_is_returned_whole():
    steps, values = np.arange(10), np.arange(10.0)
    out_steps, out_values = min_max_downsample(steps, values, 100)
    assert out_steps is steps and out_values is values


def test_a_long_series_keeps_at_most_the_budget_and_its_ends():
    steps, values = np.arange(100_000), np.sin(np.arange(100_000) / 500)
    out_steps, _ = min_max_downsample(steps, values, 1000)
    assert len(out_steps) <= 1000
    assert out_steps[0] == 0 and out_steps[-1] == 99_999
    assert np.all(np.diff(out_steps) > 0)


def test_a_one_step_spike_and_a_nan_survive_downsampling():
    values = np.ones(100_000)
    values[31_337] = 1e6
    values[77_777] = np.nan
    out_steps, out_values = min_max_downsample(np.arange(100_000), values, 400)
    assert 31_337 in out_steps and np.nanmax(out_values) == 1e6
    assert 77_777 in out_steps and np.isnan(out_values).any()
