"""A systemic endpoint error reaches the user as one line naming the role, model and endpoint, whether it
arrives as an exception chain or only as text from another process (Ray Data's user-code error)."""

from __future__ import annotations

from types import SimpleNamespace

from star1.llm.client import SystemicError
from star1.stages.llm_runner import _named, _systemic_cause


def test_text_only_error_keeps_its_first_line_without_repeating_itself():
    text = (
        "ray::MapWorker(MapBatches(TaskActor)).submit() failed\n"
        "star1.llm.client.SystemicError: systemic after 1 attempt(s): HTTP 500: Internal server error\n"
        "\nThe above exception was the direct cause of the following exception:\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block."
    )
    e = _systemic_cause(RuntimeError(text))
    assert e is not None and e.attempts == 1
    assert str(e) == "systemic after 1 attempt(s): HTTP 500: Internal server error"


def test_chained_error_is_found_and_named():
    inner = SystemicError("systemic", "HTTP 401: bad key", 2)
    try:
        try:
            raise inner
        except SystemicError as x:
            raise RuntimeError("wrapped") from x
    except RuntimeError as outer:
        found = _systemic_cause(outer)
    assert found is inner
    task = SimpleNamespace(role="rewriter")
    cfg = SimpleNamespace(model="smollm2", base_url="http://127.0.0.1:8000/v1")
    named = _named(found, task, cfg)  # type: ignore[arg-type]
    assert str(named) == (
        "systemic after 2 attempt(s): role rewriter (model smollm2 at http://127.0.0.1:8000/v1): "
        "HTTP 401: bad key"
    )
    assert _systemic_cause(RuntimeError("a row failed: HTTP 500")) is None
