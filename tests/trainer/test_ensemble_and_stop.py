import pytest

from trainer.config import RunConfig
from trainer.ensemble import ensemble_accuracy
from trainer.loop import train
from trainer.sink import MemorySink

BASE = {"epochs": 4, "batch_size": 32, "data": {"name": "digits", "seed": 0}, "model": {"hidden": [32]}}


def trained(seed: int, **extra) -> tuple[RunConfig, bytes]:
    config = RunConfig.from_dict({**BASE, "seed": seed, **extra})
    sink = MemorySink()
    result = train(config, sink, checkpoint_seconds=0.0)
    assert result.status == "succeeded"
    return config, sink.checkpoints[-1][2]


def test_an_ensemble_of_three_seeds_is_at_least_as_accurate_as_its_average_member():
    members = [trained(seed) for seed in range(3)]
    outcome = ensemble_accuracy(members)
    assert 300 < outcome["examples"] < 400 and len(outcome["members"]) == 3
    assert all(0.8 < accuracy <= 1.0 for accuracy in outcome["members"])
    assert outcome["accuracy"] >= sum(outcome["members"]) / 3 - 1e-9


def test_members_trained_on_different_splits_are_refused():
    with pytest.raises(ValueError, match="different data or splits"):
        ensemble_accuracy([trained(0), trained(1, data={"name": "digits", "seed": 1})])


class StoppingSink(MemorySink):
    def should_stop(self) -> bool:
        return self.handoffs >= 2

    def stop_reason(self) -> str | None:
        return "stopped early after epoch 1: below the median"


def test_a_sink_that_stops_with_a_reason_ends_the_run_stopped_not_cancelled():
    result = train(RunConfig.from_dict(BASE), StoppingSink(), handoff_seconds=0.0)
    assert result.status == "stopped" and result.message.startswith("stopped early after epoch 1")


class JudgedAtAnImage(MemorySink):
    """A sink whose flush of the second epoch's first-layer image decides to stop the run, as
    the worker's sink judges a study's early stopping at any flush that has new epochs."""

    def images(self, records) -> None:
        super().images(records)
        if len(self.image_records) == 2:
            self.stop_after_handoffs = 0

    def stop_reason(self) -> str | None:
        return "stopped early after epoch 2: below the median"


def test_a_stop_decided_between_hand_offs_is_taken_at_that_epoch_end():
    config = RunConfig.from_dict({**BASE, "epochs": 10, "instrument": {"histogram_every": 1}})
    result = train(config, JudgedAtAnImage(), handoff_seconds=3600.0)
    assert result.status == "stopped" and result.epochs == 2, result
