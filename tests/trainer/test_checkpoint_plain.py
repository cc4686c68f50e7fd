"""A job's checkpoint is data: run.checkpoint refuses what torch.load(weights_only=True) would
not read back, at the first checkpoint rather than at a resume."""

import collections
import io

import numpy as np
import pytest
import torch

from trainer.checkpoint import not_plain
from trainer.config import RunConfig
from trainer.schedules import Schedule
from trainwatch.jobs.vision import _state


def test_what_our_jobs_keep_is_plain_and_loads_as_weights_only():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    schedule = Schedule(RunConfig.from_dict({"schedule": {"name": "cosine"}}).schedule, optimizer, 100, 10)
    state = _state(model, optimizer, schedule, torch.amp.GradScaler("cpu", enabled=False), 7)
    assert not_plain(state) is None
    buffer = io.BytesIO()
    torch.save({"format": 1, "state": state}, buffer)
    assert torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)["state"]["step"] == 7


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ({"rng": np.random.get_state()}, "state['rng'][1] is a numpy.ndarray"),
        ({"counts": collections.Counter(a=1)}, "state['counts'] is a Counter, not a dict"),
        ({"model": torch.nn.Linear(2, 2)}, "state['model'] is a torch.nn.modules.linear.Linear"),
        ([1, {2: object()}], "state[1][2] is a builtins.object"),
    ],
)
def test_anything_else_is_named_where_it_is(state, where):
    assert not_plain(state) == where
