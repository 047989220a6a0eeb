"""The application: body limits, errors as HTTP answers, the notifier that wakes long polls."""

from __future__ import annotations

import asyncio

from chokepoint.manager.app import Notifier


def test_a_streamed_body_over_the_limit_is_413_without_a_length(sqlite_url):
    from tests.manager.conftest import make_api

    for api in make_api(sqlite_url, max_body_bytes=1000):
        chunks = (b"x" * 400 for _ in range(5))
        answer = api.client.post("/api/v1/deployments", content=chunks, headers=api.headers())
        assert answer.status_code == 413 and "over 1000 bytes" in answer.json()["detail"]
        assert api.client.get("/healthz").json()["ok"] is True


def test_the_notifier_wakes_waiters_of_one_deployment_only():
    async def scenario():
        notifier = Notifier()
        a, b = notifier.register(1), notifier.register(2)
        notifier.notify(1)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return a.done(), b.done()

    assert asyncio.run(scenario()) == (True, False)
