"""An executed notebook exported to HTML, offline: the finished run is in the page itself.

Executed as ``jupyter nbconvert --execute`` does (nbclient, widget state stored by default, or not),
then exported by nbconvert's HTMLExporter while the test process refuses every connection that
leaves the machine. A run started in one cell and awaited in a later one is the hard case: its end
is sent under the starting cell, which nbclient no longer listens to.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")

CELLS = [
    "%load_ext fluffy_nb",
    '%%fluffy shipping --run --store :memory: --durable\n'
    'async def pack(ctx):\n    ctx.set_state("boxes", 3)\n    return "label"\n'
    'async def label(ctx):\n    return "send" if ctx.get_state("boxes") else "restock"\n'
    'async def restock(ctx):\n    return "pack"\n'
    'async def send(ctx):\n    ctx.set_state("sent", True)\n',
    "%fluffy history shipping",
]


@pytest.fixture
def offline(monkeypatch):
    """Every connection to a non-loopback address fails (the kernel's own sockets are local)."""
    real = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                raise OSError(f"offline test: no connection to {host}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def test_exported_html_shows_the_finished_run_its_graph_and_history_offline(offline, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                            store_widget_state=True).execute()
    run_outputs = nb.cells[1].outputs
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in run_outputs)
    page, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    assert "shipping: completed · 4/4 states" in page  # the final status, not the starting one
    assert "idle · 0/4" not in page
    assert "1 skipped" in page
    assert "restock (skipped)" in page  # the graph, coloured as the run ended
    assert "send (done)" in page
    assert "timeline: 3 state runs" in page
    assert "<th>sequence</th>" in page  # the history table
    assert "<th>states</th>" in page


BACKGROUND = [
    "%load_ext fluffy_nb\nimport asyncio\ngate = asyncio.Event()",
    '%%fluffy shipping --store :memory: --durable\n'
    'async def pack(ctx):\n    await gate.wait()\n    ctx.set_state("boxes", 3)\n    return "label"\n'
    'async def label(ctx):\n    return "send" if ctx.get_state("boxes") else "restock"\n'
    'async def restock(ctx):\n    return "pack"\n'
    'async def send(ctx):\n    ctx.set_state("sent", True)\n',
    "handle = shipping.start()",
    "gate.set()  # the run ends while this cell runs, not the one that started it\nresult = await handle",
    "%fluffy history shipping",
]


def _data(output):
    return {k: "".join(v) if isinstance(v, list) else v for k, v in output.get("data", {}).items()}


@pytest.mark.parametrize("store_widget_state", [True, False])
def test_a_run_started_in_one_cell_and_awaited_in_another_is_saved_and_exported_as_it_ended(
        offline, tmp_path, store_widget_state):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in BACKGROUND])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                            store_widget_state=store_widget_state).execute()
    [view] = [_data(o) for o in nb.cells[2].outputs]
    assert "application/vnd.jupyter.widget-view+json" not in view  # the saved notebook needs no widget
    assert view["text/plain"].startswith("shipping: completed · 4/4 states")
    assert "restock (skipped)" in view["text/html"]
    [graph] = [_data(o) for o in nb.cells[1].outputs]  # the bare %%fluffy cell's graph, as the run ended
    assert "latest run: shipping: completed · 4/4 states" in graph["text/html"]
    assert nb.cells[3].outputs == []  # nothing added to the awaiting cell
    page, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    assert '<script type="application/vnd.jupyter.widget-view+json">' not in page  # no view needing a CDN
    assert "idle · 0/4" not in page
    assert page.count("shipping: completed · 4/4 states") >= 2  # the view and the defining cell's graph
    assert "send (done)" in page
    assert "<th>sequence</th>" in page
