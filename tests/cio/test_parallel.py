"""Calls made side by side (cio.parallel) run in the caller's context: what they log carries the caller's request and
delivery ids."""

import contextvars
import threading

from cio.parallel import call_together

request_id = contextvars.ContextVar("request_id", default=None)


def test_calls_on_pool_threads_see_the_callers_context_variables():
    request_id.set("req-7")

    def seen():
        return threading.current_thread().name, request_id.get()

    (first_thread, first), (second_thread, second) = call_together(seen, seen)

    assert first_thread != second_thread  # the second call ran on a pool thread
    assert first == second == "req-7"


def test_a_call_cannot_change_the_callers_context():
    request_id.set("req-8")
    call_together(lambda: None, lambda: request_id.set("changed"))
    assert request_id.get() == "req-8"
