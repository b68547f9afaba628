"""A real ipykernel driven through jupyter_client, with the test acting as the browser.

``kernel`` starts a fresh kernel per test (killed in teardown). :class:`KernelDriver`
runs cells, keeps every iopub message, finds widget models from their ``comm_open``
messages, and sends widget messages exactly as the JupyterLab widget manager does
(protocol 2: ``comm_msg`` with ``{"method": "update", "state": {...}, "buffer_paths": []}``
or ``{"method": "custom", "content": {...}}``), one at a time, each followed by waiting for
the kernel's idle status for that message.
"""

from __future__ import annotations

import os
import queue
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client")


class KernelDriver:
    """One kernel plus the client side of its messages."""

    def __init__(self, km: Any, kc: Any) -> None:
        self.km = km
        self.kc = kc
        self.iopub: list[dict[str, Any]] = []
        self._syncing: dict[str, str] = {}  # comm id -> msg id of its value sync not yet acknowledged
        self.held: dict[str, dict[str, Any]] = {}  # comm id -> state held back, as the frontend does

    # -- receiving ---------------------------------------------------------------------------
    def pump(self, timeout: float = 0.05) -> dict[str, Any] | None:
        """Read one iopub message (None if none arrived within ``timeout``)."""
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        self.iopub.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            parent = msg["parent_header"].get("msg_id")
            for comm_id, msg_id in list(self._syncing.items()):
                if msg_id == parent:  # acknowledged: the frontend now sends what it held back
                    del self._syncing[comm_id]
                    if comm_id in self.held:
                        self._sync(comm_id, self.held.pop(comm_id))
        return msg

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0,
                 what: str = "message") -> dict[str, Any]:
        """The first iopub message (already seen or new) matching ``predicate``."""
        for msg in self.iopub:
            if predicate(msg):
                return msg
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.pump(0.1)
            if msg is not None and predicate(msg):
                return msg
        raise AssertionError(f"no {what} within {timeout}s; last messages: {self._tail()}")

    def wait_idle(self, parent_id: str, timeout: float = 20.0) -> None:
        """Wait until the kernel reports idle for the request ``parent_id``."""
        self.wait_for(lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                      and m["parent_header"].get("msg_id") == parent_id, timeout, f"idle for {parent_id}")

    def _tail(self) -> list[tuple[str, Any]]:
        return [(m["msg_type"], str(m["content"])[:160]) for m in self.iopub[-8:]]

    # -- running cells -----------------------------------------------------------------------
    def submit(self, code: str) -> str:
        """Send a cell without waiting; returns its msg id."""
        return self.kc.execute(code, store_history=False)

    def reply(self, msg_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The execute_reply of ``msg_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_shell_msg(timeout=0.1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        raise AssertionError(f"no execute_reply for {msg_id} within {timeout}s; last: {self._tail()}")

    def run(self, code: str, timeout: float = 30.0) -> str:
        """Run a cell to the end; returns its stdout. Raises AssertionError on a cell error."""
        msg_id = self.submit(code)
        reply = self.reply(msg_id, timeout)
        self.wait_idle(msg_id, timeout)
        if reply["content"]["status"] != "ok":
            raise AssertionError(f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}\n"
                                 + "\n".join(reply["content"].get("traceback", [])))
        return self.stdout(msg_id)

    def stdout(self, msg_id: str) -> str:
        """Everything printed to stdout under request ``msg_id``."""
        return "".join(m["content"]["text"] for m in self.iopub if m["msg_type"] == "stream"
                       and m["content"]["name"] == "stdout" and m["parent_header"].get("msg_id") == msg_id)

    # -- acting as the widget frontend -------------------------------------------------------------
    def widgets(self, model: str | None = None, **state: Any) -> list[tuple[str, dict[str, Any]]]:
        """(comm_id, state) of every widget opened so far matching ``_model_name`` and ``state``."""
        found = []
        for m in self.iopub:
            if m["msg_type"] != "comm_open" or m["content"].get("target_name") != "jupyter.widget":
                continue
            st = m["content"]["data"]["state"]
            if model is not None and st.get("_model_name") != model:
                continue
            if all(st.get(k) == v for k, v in state.items()):
                found.append((m["content"]["comm_id"], st))
        return found

    def wait_widget(self, model: str, timeout: float = 20.0, **state: Any) -> str:
        """The comm id of the first widget of ``model`` with ``state`` (waits for its comm_open)."""

        def match(m: dict[str, Any]) -> bool:
            if m["msg_type"] != "comm_open" or m["content"].get("target_name") != "jupyter.widget":
                return False
            st = m["content"]["data"]["state"]
            return st.get("_model_name") == model and all(st.get(k) == v for k, v in state.items())

        return self.wait_for(match, timeout, f"{model} {state}")["content"]["comm_id"]

    def comm_msg(self, comm_id: str, data: dict[str, Any], *, wait: bool = True) -> tuple[str, float]:
        """Send one comm message (as the browser); returns (msg id, monotonic send time)."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        sent = time.monotonic()
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        if wait:
            self.wait_idle(msg_id)
        return msg_id, sent

    def set_value(self, comm_id: str, *, busy: bool = False, **state: Any) -> str | None:
        """The browser syncing a changed widget value (one ``update`` message).

        Like the JupyterLab widget manager, a model whose previous sync the kernel has not yet
        acknowledged (idle status for it) does not send: the state is held back (``held``) and
        sent on that idle; then None is returned. An idle kernel acknowledges at once (this
        waits for it). While a cell is busy, ipykernel 7.4 handles comm messages without status
        messages, so the acknowledgement never comes; then the kernel's ``echo_update`` of the
        new state tells that it arrived.
        """
        if comm_id in self._syncing:
            self.held[comm_id] = {**self.held.get(comm_id, {}), **state}
            return None
        msg_id = self._sync(comm_id, state)
        if busy:
            self.wait_for(lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
                          and m["content"]["data"].get("method") == "echo_update"
                          and m["content"]["data"].get("state") == state, what=f"echo_update {state}")
        else:
            self.wait_idle(msg_id)
        return msg_id

    def _sync(self, comm_id: str, state: dict[str, Any]) -> str:
        msg_id, _ = self.comm_msg(comm_id, {"method": "update", "state": state, "buffer_paths": []}, wait=False)
        self._syncing[comm_id] = msg_id
        return msg_id

    def click(self, comm_id: str, *, wait: bool = True) -> tuple[str, float]:
        """The browser reporting a button click (one ``custom`` message)."""
        return self.comm_msg(comm_id, {"method": "custom", "content": {"event": "click"}}, wait=wait)

    def send_custom(self, comm_id: str, content: dict[str, Any], *, wait: bool = True) -> tuple[str, float]:
        """The browser's ``model.send(content)`` of an anywidget (one ``custom`` message)."""
        return self.comm_msg(comm_id, {"method": "custom", "content": content}, wait=wait)

    def state_of(self, comm_id: str) -> dict[str, Any]:
        """A widget's state as the browser has it now: its ``comm_open`` state plus every update since."""
        state: dict[str, Any] = {}
        for m in self.iopub:
            if m["msg_type"] == "comm_open" and m["content"]["comm_id"] == comm_id:
                state.update(m["content"]["data"]["state"])
            elif (m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
                  and m["content"]["data"].get("method") in ("update", "echo_update")):
                state.update(m["content"]["data"]["state"])
        return state

    def wait_state(self, comm_id: str, timeout: float = 20.0, **expected: Any) -> dict[str, Any]:
        """Wait until widget ``comm_id``'s state holds ``expected``; returns the whole state."""
        def holds(_m: dict[str, Any]) -> bool:
            state = self.state_of(comm_id)
            return all(state.get(k) == v for k, v in expected.items())

        self.wait_for(holds, timeout, f"state {expected} of {comm_id}")
        return self.state_of(comm_id)

    def updates_to(self, comm_id: str) -> list[dict[str, Any]]:
        """State updates the kernel sent for widget ``comm_id``."""
        return [m["content"]["data"]["state"] for m in self.iopub
                if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
                and m["content"]["data"].get("method") in ("update", "echo_update")]


def start_kernel() -> KernelDriver:
    """Start a real ipykernel (this interpreter's) and wait until it answers."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"], env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return KernelDriver(km, kc)


def stop_kernel(driver: KernelDriver) -> None:
    """Stop the channels and kill the kernel process."""
    try:
        driver.kc.stop_channels()
    finally:
        driver.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel() -> Iterator[KernelDriver]:
    """A fresh kernel per test, always killed afterwards."""
    driver = start_kernel()
    try:
        yield driver
    finally:
        stop_kernel(driver)
