"""A human reviewer in Argilla, for tests: an annotator who logs in like the UI and answers records.

Shared by the review round-trip test and the pipeline end-to-end test.
"""

from __future__ import annotations

import httpx

from finner.review import ARGILLA_LABEL, SPAN_QUESTION


def reviewer(client, url: str, name: str, workspace: str) -> httpx.Client:
    """An annotator of `workspace` who logs in like the UI does (password -> token)."""
    import argilla as rg

    user = rg.User(username=name, password="reviewer-pass", role="annotator", client=client).create()
    user.add_to_workspace(client.workspaces(workspace))
    login = httpx.post(f"{url}/api/v1/token", data={"username": name, "password": "reviewer-pass"}, timeout=30)
    assert login.status_code == 201, login.text
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {login.json()['access_token']}"}, timeout=30)


def answer(reviewer: httpx.Client, record_id: str, status: str, spans: list[tuple[int, int]] | None) -> None:
    """Respond to one record: `submitted` with the drawn (start, end) spans, `discarded`, or `draft`."""
    body = {"status": status}
    if spans is not None:
        body["values"] = {SPAN_QUESTION: {"value": [{"label": ARGILLA_LABEL, "start": s, "end": e} for s, e in spans]}}
    response = reviewer.post(f"/api/v1/records/{record_id}/responses", json=body)
    assert response.status_code == 201, response.text
