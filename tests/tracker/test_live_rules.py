"""Each rule of a running run lives once, whatever trains the run: a worker's run (Trainwatch's
own trainer or a job's function, through tracker.worker.sink) and a client's run over HTTP
(tracker.core.external) call it from its one home and repeat none of it."""

from tests.conftest import ROOT
from tracker.core import checkpoints
from tracker.core.ingest import handoff_fields, write_handoff
from tracker.core.lifecycle import end_as_reported, reported_ending
from tracker.core.live import EarlyStopping, LiveUpkeep, upkeep_due, worker_seen
from tracker.core.storage import roll_up_series
from tracker.worker.sink import DatabaseSink
from trainer.system import SystemSampler

# each rule, its home, and what that home writes or reads, which no other module of the server,
# the trainer or the client spells out again
RULES = [
    (worker_seen, "tracker/core/live.py", "update(seen_at="),
    (checkpoints.save, "tracker/core/checkpoints.py", "Checkpoint.objects.update_or_create"),
    (EarlyStopping, "tracker/core/live.py", "early_stop_reason(self.run"),
    (upkeep_due, "tracker/core/live.py", "diagnosed_at__lt="),
    (LiveUpkeep, "tracker/core/live.py", "diagnose_run(run_id)"),
    (handoff_fields, "tracker/core/ingest.py", '"lr_last"'),
    # what one hand-off stores, whatever trains the run
    (write_handoff, "tracker/core/ingest.py", 'said.get("step")'),
    (roll_up_series, "tracker/core/storage.py", "count >= low or total + count > high"),
    (SystemSampler, "trainer/system.py", "memory_info().rss"),
    (reported_ending, "tracker/core/lifecycle.py", 'finish["seconds"]'),
    (end_as_reported, "tracker/core/lifecycle.py", "ending__isnull=False"),
    # a database outage: the points kept and written later, the run failed once it lasts too long
    (DatabaseSink, "tracker/worker/sink.py", "self._outage_since = "),
]


def test_each_rule_of_a_running_run_has_one_home():
    sources = {
        path.relative_to(ROOT).as_posix(): path.read_text()
        for package in ("tracker", "trainer", "trainwatch")
        for path in (ROOT / package).rglob("*.py")
    }
    for rule, home, spelled in RULES:
        assert rule.__module__ == home.removesuffix(".py").replace("/", ".")
        assert spelled in sources[home], f"{home} no longer holds {rule.__name__}"
        repeated = [
            path for path, text in sources.items() if path not in (home, "tracker/settings.py") and spelled in text
        ]
        assert repeated == [], f"{', '.join(repeated)} repeat {rule.__name__}"
