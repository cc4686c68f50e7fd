"""Each rule of a running run lives once, in tracker.core.live, whatever trains the run: the
worker's own trainer (tracker.worker.sink) and a job's function (tracker.worker.jobs) call it and
repeat none of it."""

from pathlib import Path

from tests.conftest import ROOT
from tracker.core.live import EarlyStopping, LiveUpkeep, store_checkpoint, worker_seen

# what each rule's home writes or reads, which no other module of the worker may spell out again
RULES = {
    worker_seen: "update(seen_at=",
    store_checkpoint: "RunCheckpoint.objects.update_or_create",
    EarlyStopping: "early_stop_reason(",
    LiveUpkeep: "TRAINWATCH_DIAGNOSE_SECONDS",
}


def test_each_rule_of_a_running_run_has_one_home():
    home = (ROOT / "tracker" / "core" / "live.py").read_text()
    for rule, spelled in RULES.items():
        assert rule.__module__ == "tracker.core.live" and spelled in home
        for path in (ROOT / "tracker" / "worker").glob("*.py"):
            assert spelled not in Path(path).read_text(), f"{path.name} repeats {rule.__name__}"
