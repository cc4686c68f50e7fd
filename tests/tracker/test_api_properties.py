"""Random bodies thrown at the run-creation API: 201 or a 400 with a JSON message, never a 500,
and nothing created on a 400."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.trainer.test_config_properties import configs
from tracker.models import Run

bodies = st.one_of(
    st.fixed_dictionaries(
        {"project": st.one_of(st.text(max_size=120), st.integers()), "config": configs()},
        optional={
            "name": st.one_of(st.text(max_size=250), st.none()),
            "tags": st.one_of(st.lists(st.text(max_size=45), max_size=12), st.text()),
        },
    ),
    configs(),
)


@pytest.mark.django_db
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_the_api_answers_201_or_400_never_500(logged_in, body):
    before = Run.objects.count()
    response = logged_in.post("/api/runs/", data=json.dumps(body, allow_nan=True), content_type="application/json")
    assert response.status_code in (201, 400), response.content[:300]
    if response.status_code == 400:
        assert response.json()["errors"] and Run.objects.count() == before
    else:
        assert Run.objects.count() == before + 1
