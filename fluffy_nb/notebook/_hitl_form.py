"""Forms for human-in-the-loop requests: :class:`HumanForm`, :class:`FormsArea`, :class:`WidgetResponder`.

One form per open request, under the running cell (or inside the run's live view, which
embeds :meth:`FormsArea.for_agent`). A form is an anywidget (``_hitl_form.js``, shipped inline,
no build step): the prompt and the inputs fit the request (one button per choice, one input
per field of a pydantic schema with its title, description, default and limits, or a text
box). A countdown shows how long is left and the default that will be used. A rejected answer
shows the validator's message (pydantic's errors beside their fields) with what was typed; an
accepted one collapses the form to a one-line record.

Why anywidget (DESIGN.md, "Human in the loop"): the browser keeps every field's value and
sends them all inside ONE custom message on submit. No value has to reach the kernel as a
separate widget update, which JupyterLab's widget manager holds back while a cell is busy.
The kernel only ever sends state to the browser; forms never ``print`` or use ``with out:``.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import threading
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets

from ..engine import _hooks
from ..engine._errors import FluffyWarning, HumanInputError
from ..engine._events import Event, HumanAnswered, HumanRejected, HumanRequested, HumanWithdrawn
from ..engine._hitl import HumanRequest
from ._finals import forget, update_final
from ._hitl_fields import field_errors, field_specs, read_values

_HERE = Path(__file__).resolve().parent
#: the events a forms area acts on (any other event is one set lookup)
_FORM_EVENTS = frozenset({HumanRequested, HumanRejected, HumanAnswered, HumanWithdrawn})


def _short(value: Any, limit: int = 200) -> str:
    """``value`` as plain text (the browser shows it as text, never as HTML), shortened."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HumanForm(anywidget.AnyWidget):
    """The form answering one :class:`HumanRequest`.

    The browser holds the typed values and sends them in one ``{"event": "submit", ...}``
    custom message; :meth:`submit` is what that message does (tests call it directly).

    Attributes:
        request: The request it answers.
        closed: Whether the form is a record now (answered, withdrawn, timed out or closed).
    """

    _esm = (_HERE / "_hitl_form.js").read_text(encoding="utf-8")
    _css = (_HERE / "_hitl_form.css").read_text(encoding="utf-8")

    request_id = traitlets.Unicode("").tag(sync=True)
    spec = traitlets.Dict().tag(sync=True)  # what to draw: prompt, kind, choices, fields
    values = traitlets.Dict().tag(sync=True)  # what the inputs hold when drawn (defaults, or a rejected try)
    status = traitlets.Unicode("open").tag(sync=True)  # open, answered, withdrawn, timed_out, closed
    tries = traitlets.Int(0).tag(sync=True)  # rejected tries so far: a change re-enables the browser's submit
    message = traitlets.Unicode("").tag(sync=True)  # why the last answer was rejected
    errors = traitlets.Dict().tag(sync=True)  # field name -> pydantic's complaint
    countdown = traitlets.Unicode("").tag(sync=True)
    record = traitlets.Unicode("").tag(sync=True)  # the one-line record once closed
    ok = traitlets.Bool(True).tag(sync=True)

    def __init__(self, request: HumanRequest) -> None:
        spec, values = field_specs(request)
        super().__init__(request_id=request.request_id, spec=spec, values=values)
        self.request = request
        self._ticker: asyncio.Task[None] | None = None
        self._submitted: tuple[dict[str, Any], dict[str, str]] | None = None
        self._shown_try = 0  # the request's try whose rejection the form shows
        self._handled: set[str] = set()  # submit ids seen: a resent message is acknowledged, not answered twice
        self._repeats = 0  # copies of handled submits that came again: the browser did not hear the ack
        #: called as fn(form) when the browser evidently does not receive this form's messages
        self.on_unheard: Callable[[HumanForm], Any] | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.get_ident()
        self._context = contextvars.copy_context()
        self.on_msg(self._on_message)
        if request.rejection:
            self.show_rejection(request.rejection)
        if request.timeout is not None:
            self._tick()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._ticker = loop.create_task(self._count_down())

    @property
    def closed(self) -> bool:
        """Whether the form no longer takes answers."""
        return self.status != "open"

    # -- the browser's one message -------------------------------------------------------------
    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # ipykernel >= 7.4 may hand a comm message to a subshell's thread (it routes a comm's
        # messages to the subshell that last sent on it). The form answers on the loop and in
        # the context it was made in: the engine is not thread-safe, the state wakes at once,
        # and every message this comm sends keeps the main shell as its parent, so the next
        # submit is routed there too.
        if threading.get_ident() == self._thread or self._loop is None:
            self._context.copy().run(self._receive, content)
        else:
            self._loop.call_soon_threadsafe(self._receive, content, context=self._context.copy())

    def _receive(self, content: Any) -> None:
        if not isinstance(content, dict) or content.get("event") != "submit":
            return
        submit_id = content.get("id")
        if isinstance(submit_id, str):
            self.send({"ack": submit_id})  # the browser stops resending it
            if submit_id in self._handled:
                self._repeats += 1
                if self._repeats == 2 and self.on_unheard is not None:
                    # the page keeps resending what was answered: its model of this widget does
                    # not get the kernel's messages (ipywidgets' JupyterLab manager can orphan a
                    # widget opened while it starts up). A new widget gets a new model.
                    self.on_unheard(self)
                return
            self._handled.add(submit_id)
        self.submit(content)

    def submit(self, content: dict[str, Any]) -> bool | None:
        """Answer the request with a submit message's content; True accepted, False rejected.

        ``content`` is ``{"values": {field: value}}`` (text and schema forms) or ``{"choice": i}``.
        None when the form was closed already (the browser is told again).
        """
        if self.closed:
            self.send_state("status")  # a late click: make sure that view shows the record
            return None
        request = self.request
        try:
            answer, raw = read_values(request, content)
        except ValueError as exc:
            with self.hold_sync():
                self.message = f"this form could not read the answer ({exc}); please try again"
                self.tries += 1
            return False
        self._submitted = (raw, field_errors(request.schema, answer))
        try:
            return request.answer(answer, source="person")
        except HumanInputError:
            self.collapse("closed before this answer arrived", ok=False)
            return None
        finally:
            self._submitted = None

    # -- showing state -------------------------------------------------------------------------
    def show_rejection(self, message: str) -> None:
        """Show why the last answer was rejected; the browser keeps what was typed."""
        if self.closed or self.request.tries <= self._shown_try:
            return  # shown already (the event, then the engine asking the responder again)
        self._shown_try = self.request.tries
        raw, errors = self._submitted or (None, {})
        general = errors.pop("", None)
        with self.hold_sync():  # one update: message, errors, values, and the try that re-enables submit
            if errors:
                fields = ", ".join(sorted(errors))
                self.message = f"please correct {fields}" + (f" ({general})" if general else "")
            else:
                self.message = message
            self.errors = errors
            if raw is not None:
                self.values = {**self.values, **raw}
            self.tries += 1

    def _tick(self) -> None:
        req = self.request
        left = req.remaining()
        then = (f"then the default {_short(req.default)} is used" if req.default is not None
                else "then the state fails (no default)")
        seconds = req.timeout if left is None else left
        self.countdown = f"⏱ {seconds:.0f} s left, {then}"

    async def _count_down(self) -> None:
        while not self.closed and self.request.is_open:
            self._tick()
            await asyncio.sleep(1.0)

    def collapse(self, text: str, *, ok: bool = True) -> None:
        """Replace the form by a one-line record of what happened."""
        if self.closed:
            return
        if self._ticker is not None and self._ticker is not asyncio.current_task():
            self._ticker.cancel()
        mark = "✓" if ok else "✗"
        req = self.request
        if ok:
            status = "answered"
        elif text == "closed":
            status = "closed"
        else:
            status = "timed_out" if req.status == "timed_out" else "withdrawn"
        with self.hold_sync():
            self.record = f"{mark} {_short(req.state)}: {_short(req.prompt)} → {text}"
            self.ok = ok
            self.status = status

    def __repr__(self) -> str:
        return f"<HumanForm {self.request.request_id} {self.request.prompt!r} status={self.status}>"


#: attribute of an agent holding its FormsArea: the area lives exactly as long as its agent
#: (a module-level WeakKeyDictionary would keep agents alive: the area refers back to them)
_AREA_ATTR = "_fluffy_forms_area"


class FormsArea(widgets.VBox):
    """All human-in-the-loop forms of one agent; follows the agent's events.

    Requests open forms, rejections show their message, answers and withdrawals collapse
    forms into one-line records. Use :meth:`for_agent` to share one area between the live
    view (which embeds it and sets ``shown = True``) and the :class:`WidgetResponder`.
    """

    def __init__(self, agent: Any) -> None:
        super().__init__([])
        # weakly: ipywidgets keeps open widgets alive, and a strong link would keep the agent too
        self._agent_ref = weakref.ref(agent)
        self.forms: dict[str, HumanForm] = {}
        self.shown = False
        self.display_handle: Any = None  # set when the area is displayed on its own (no live view)
        self._static = False
        self._unsubscribe = agent.events.subscribe(self._handle, types=_FORM_EVENTS)  # no call for state events
        for request in agent.pending_requests():
            self.show(request)

    @property
    def agent(self) -> Any:
        """The agent whose forms these are (None once the agent is gone)."""
        return self._agent_ref()

    @classmethod
    def for_agent(cls, agent: Any) -> FormsArea:
        """The agent's forms area (created on first use)."""
        area = agent.__dict__.get(_AREA_ATTR)
        if area is None:
            area = cls(agent)
            setattr(agent, _AREA_ATTR, area)
        return area

    @classmethod
    def of(cls, agent: Any) -> FormsArea | None:
        """The agent's forms area if it has one (None: no form was ever shown for it)."""
        area = getattr(agent, "__dict__", {}).get(_AREA_ATTR)
        return area if isinstance(area, cls) else None

    def records(self) -> list[str]:
        """Every form as one line: the record of an answered or withdrawn one, the question of an
        open one (what the static picture of a run shows instead of the widgets)."""
        return [form.record or f"… {_short(form.request.state)}: {_short(form.request.prompt)} (waiting)"
                for form in self.forms.values()]

    def records_html(self) -> str:
        """:meth:`records` as escaped HTML lines, classed like the widget's records (``fluffy-form-record``,
        ``fluffy-ok`` for an answer), so a page reads them the same before and after the run ends."""
        out = []
        for form, line in zip(self.forms.values(), self.records(), strict=True):
            state = ("fluffy-ok" if form.ok else "fluffy-not-ok") if form.record else "fluffy-waiting"
            css = f"fluffy-form-record {state}"
            out.append(f'<div class="{css}" style="font-family:sans-serif;font-size:13px">{html.escape(line)}</div>')
        return "".join(out)

    def show(self, request: HumanRequest) -> HumanForm:
        """The form of ``request`` (added if new; a re-ask shows the rejection)."""
        form = self.forms.get(request.request_id)
        if form is None:
            form = self.forms[request.request_id] = HumanForm(request)
            form.on_unheard = self._renew
            self.children = (*self.children, form)  # type: ignore[has-type]
            if self._static:  # shown as records since the last answer: the widget comes back
                self._static = False
                forget(self.display_handle)
                self.display_handle.update(self)
        elif request.rejection:
            form.show_rejection(request.rejection)
        return form

    def _renew(self, old: HumanForm) -> None:
        """Show ``old``'s request in a new form widget holding what ``old`` showed (see ``on_unheard``)."""
        if self.forms.get(old.request_id) is not old:
            return
        new = HumanForm(old.request)
        new._handled = old._handled
        new._shown_try = old._shown_try
        with new.hold_sync():
            for name in ("values", "message", "errors", "tries", "countdown", "record", "ok", "status"):
                setattr(new, name, getattr(old, name))
        if old._ticker is not None:
            old._ticker.cancel()
            new._ticker, old._ticker = None, None
            if new.request.timeout is not None and new._loop is not None and not new.closed:
                new._ticker = new._loop.create_task(new._count_down())
        new.on_unheard = self._renew
        self.forms[old.request_id] = new
        self.children = tuple(new if child is old else child for child in self.children)
        old.close()

    def open_forms(self) -> list[HumanForm]:
        """Forms still waiting for an answer."""
        return [f for f in self.forms.values() if not f.closed]

    def _handle(self, event: Event) -> None:
        # at once (the bus calls this for the four human events only): the answer has already
        # woken the waiting state (the engine resolves it before publishing), and a form's update
        # is one small message, so the record is on its way before the run can end and its live
        # view draws the final figures
        if isinstance(event, HumanRequested):
            agent = self.agent
            request = None if agent is None else agent.human.get(event.request_id)
            if request is not None:
                self.show(request)
        elif isinstance(event, HumanRejected):
            form = self.forms.get(event.request_id)
            if form is not None:
                form.show_rejection(event.message)
        elif isinstance(event, HumanAnswered):
            form = self.forms.get(event.request_id)
            if form is not None:
                form.collapse(f"{_short(event.value)} ({_how(event)})")
                self._settle()
        elif isinstance(event, HumanWithdrawn):
            form = self.forms.get(event.request_id)
            if form is not None:
                request = form.request
                why = ("nobody answered in time" if request.status == "timed_out"
                       else "withdrawn: the run or this state was stopped")
                form.collapse(why, ok=False)
                self._settle()

    def _settle(self) -> None:
        """Shown on its own and nothing left open: the display becomes the one-line records, so the
        saved notebook shows what was asked and answered (not a widget that needs JavaScript)."""
        if self.display_handle is None or self.open_forms():
            return
        self._static = True
        update_final(self.display_handle, {"text/plain": "\n".join(self.records()), "text/html": self.records_html()},
                     raw=True)

    def close(self) -> None:
        """Stop following the agent and close the widgets."""
        self._unsubscribe()
        agent = self.agent
        if agent is not None and agent.__dict__.get(_AREA_ATTR) is self:
            delattr(agent, _AREA_ATTR)
        for form in self.forms.values():
            form.collapse("closed", ok=False)
        super().close()

    def __repr__(self) -> str:
        name = getattr(self.agent, "name", None)
        return f"<FormsArea agent={name!r} open={len(self.open_forms())} forms={len(self.forms)}>"


def _how(event: HumanAnswered) -> str:
    """How an answer came, for the form's record."""
    if event.source == "person":
        return f"accepted after {event.waited:.1f} s"
    known = {"default": "default, nobody answered in time", "replay": "replayed"}
    return known.get(event.source, _short(event.source))


class WidgetResponder:
    """Answers human-in-the-loop requests with widget forms under the running cell.

    Forms live in the agent's :class:`FormsArea`; if no live view has embedded it, the
    responder displays it (once) when the first request opens.

    Args:
        display: Display the forms area when nothing else shows it.
    """

    def __init__(self, *, display: bool = True) -> None:
        self.display = display
        self.area: FormsArea | None = None
        self._agent: Any = None
        self._checked = False

    def attach(self, agent: Any) -> None:
        """Bind to ``agent`` and create (or reuse) its forms area."""
        self._agent = agent
        self.area = FormsArea.for_agent(agent)
        self._checked = False

    def on_request(self, request: HumanRequest) -> None:
        """Show (or refresh) the request's form."""
        area = self.area
        if area is None:
            raise HumanInputError("WidgetResponder.on_request before attach(agent)")
        area.show(request)
        if not self._checked:
            self._checked = True
            _check_kernel(self._agent)
        if self.display and not area.shown:
            area.shown = True
            from IPython.display import display

            area.display_handle = display(area, display_id=True)

    def __repr__(self) -> str:
        return f"WidgetResponder(area={self.area!r})"


def _is_blocking(agent: Any) -> bool:
    """Whether the agent's run is awaited by a busy cell (not started with ``agent.start()``)."""
    handle = getattr(agent, "handle", None)
    return handle is None or handle.done()


def _check_kernel(agent: Any) -> None:
    """Warn when a blocking run asks a person on an ipykernel that cannot deliver the answer."""
    if not _is_blocking(agent):
        return  # background run: the kernel is idle, widget messages flow everywhere
    try:
        import ipykernel
    except ImportError:
        return
    parts = tuple(int(p) for p in ipykernel.__version__.split(".")[:2] if p.isdigit())
    if parts < (7, 4):
        warnings.warn(
            f"agent {agent.name!r} asks a person inside a blocking `await agent.run()`, but ipykernel "
            f"{ipykernel.__version__} does not deliver widget clicks to a busy cell (>= 7.4 does). Start the "
            "run in the background instead: `handle = agent.start()` (or %%fluffy), then `await handle`",
            FluffyWarning, stacklevel=2,
        )


def notebook_responder(agent: Any) -> WidgetResponder | None:
    """``_hooks.default_responder``: widgets when running inside a Jupyter kernel, else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    return WidgetResponder()


def install() -> None:
    """Make agents without an explicit responder answer through widgets inside a kernel."""
    _hooks.default_responder = notebook_responder


def uninstall() -> None:
    """Undo :func:`install`."""
    if _hooks.default_responder is notebook_responder:
        _hooks.default_responder = None
