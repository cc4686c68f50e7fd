"""Defence in depth, against gunicorn: a worker's import traceback is for staff only, and a
job's checkpoint is data (refused at the first checkpoint otherwise, read back weights only)."""

from __future__ import annotations

import io

import pytest
import torch

from tests.security.conftest import api
from trainer.checkpoint import not_plain

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_workers_import_traceback_is_shown_to_staff_only(site, member, staff, reported_worker):
    from tracker.models import ApiToken

    as_member = {e["name"]: e for e in api(site, member["token"], "GET", "/api/jobs/").json()["entry_points"]}
    assert as_member["testjobs-broken"]["error"] == (
        "could not be imported on the workers; staff see why in the admin's job queue"
    )
    staff_token = ApiToken.issue(staff, "ops")[1]
    as_staff = {e["name"]: e for e in api(site, staff_token, "GET", "/api/jobs/").json()["entry_points"]}
    assert "ModuleNotFoundError" in as_staff["testjobs-broken"]["error"]


def test_a_checkpoint_that_is_not_plain_data_cannot_run_code_when_it_is_read():
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    assert not_plain({"model": {}, "trap": Payload()}).startswith("state['trap'] is a tests.security.")
    buffer = io.BytesIO()
    torch.save({"format": 1, "state": {"trap": Payload()}}, buffer)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
