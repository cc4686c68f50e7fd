import pytest

from tracker.models import ApiToken

pytestmark = pytest.mark.django_db


def test_a_user_issues_a_token_shown_once_and_it_opens_the_api(logged_in, client, user):
    response = logged_in.post("/tokens/", {"name": "laptop"})
    issued = response.context["issued"]
    assert response.status_code == 200 and issued.startswith("tw_") and issued in response.content.decode()
    assert f"export TRAINWATCH_TOKEN={issued}" in response.content.decode()
    token = ApiToken.objects.get(user=user)
    assert token.name == "laptop" and token.digest == ApiToken.hash(issued)
    assert client.get("/api/runs/", HTTP_AUTHORIZATION=f"Bearer {issued}").status_code == 200
    assert issued not in logged_in.get("/tokens/").content.decode()  # never shown again


def test_a_token_needs_a_name_and_is_revoked_by_its_owner_only(logged_in, client, user, django_user_model):
    assert logged_in.post("/tokens/", {"name": ""}).status_code == 400 and not ApiToken.objects.exists()
    _, mine = ApiToken.issue(user, "script")
    bob = django_user_model.objects.create_user("bob")
    theirs, _ = ApiToken.issue(bob, "bob's")
    assert logged_in.post(f"/tokens/{theirs.pk}/revoke/").status_code == 404
    logged_in.post(f"/tokens/{ApiToken.objects.get(user=user).pk}/revoke/")
    assert client.get("/api/runs/", HTTP_AUTHORIZATION=f"Bearer {mine}").status_code == 401
    assert ApiToken.objects.filter(user=bob).exists()
