"""Widget forms for human-in-the-loop requests: :class:`HumanForm`, :class:`FormsArea`, :class:`WidgetResponder`.

One form per open request, under the running cell (or inside the run's live view, which
embeds :meth:`FormsArea.for_agent`). The prompt is shown as escaped text; the input fits the
request: one button per choice, one widget per field of a pydantic schema, or a text box.
A countdown shows how long is left and the default that will be used. A rejected answer
shows the validator's message; an accepted one collapses the form to a one-line record.

Jupyter facts this follows (see DESIGN.md, "Human in the loop"): a busy ipykernel 7.4 cell
drops all but the first of several widget value updates, so inputs use
``continuous_update=False`` and ONE submit handler reads every field and answers in one go
(a choice is a single button click: one message). Forms never ``print`` or use ``with out:``.
A field whose value arrived is replaced by a fresh widget (see ``HumanForm.renew_fields``);
the replaced one stays open, so a value typed into it during the swap still reaches the form.
"""

from __future__ import annotations

import asyncio
import enum
import html
import typing
import warnings
import weakref
from typing import Any

import ipywidgets as widgets

from ..engine import _hooks
from ..engine._errors import FluffyWarning, HumanInputError
from ..engine._events import Event, HumanAnswered, HumanRejected, HumanRequested, HumanWithdrawn
from ..engine._hitl import HumanRequest

_ERROR_STYLE = "color:#b00020"
REDRAW_DELAY = 0.02  # seconds between an answer and its form collapsing
_MUTED_STYLE = "color:#666"
_KEEP: Any = object()


def _text(value: Any, limit: int = 200) -> str:
    """``value`` as escaped HTML text, shortened."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text)


def _field_widget(name: str, info: Any, value: Any = _KEEP) -> widgets.Widget:
    """The input widget for one pydantic field, holding ``value`` if given (else the default)."""
    widget = _default_field_widget(name, info)
    if value is not _KEEP:
        widget.value = value  # before it is displayed: the frontend has it when it draws the field
    return widget


def _default_field_widget(name: str, info: Any) -> widgets.Widget:
    """The input widget for one pydantic field (values stay on the kernel side until submit)."""
    annotation = info.annotation
    label = info.title or name
    has_default = not info.is_required()
    default = info.default if has_default else None
    origin = typing.get_origin(annotation)
    style = {"description_width": "initial"}
    if annotation is bool:
        return widgets.Checkbox(value=bool(default), description=label, indent=False)
    if origin is typing.Literal:
        options = list(typing.get_args(annotation))
        return widgets.Dropdown(options=options, value=default if default in options else options[0],
                                description=label, style=style)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        options = [(str(m.value), m.value) for m in annotation]
        value = default.value if isinstance(default, enum.Enum) else options[0][1]
        return widgets.Dropdown(options=options, value=value, description=label, style=style)
    return widgets.Text(value="" if default is None else str(default), description=label,
                        placeholder=getattr(annotation, "__name__", ""), continuous_update=False, style=style)


def _answer_widget(value: Any = _KEEP) -> widgets.Text:
    """The text box of a plain request."""
    return widgets.Text(value="" if value is _KEEP else value, placeholder="your answer", continuous_update=False)


class HumanForm(widgets.VBox):
    """The form answering one :class:`HumanRequest`.

    Attributes:
        request: The request it answers.
        submit: The submit button (None for choices, where each choice is a button).
        choice_buttons: One button per choice.
        fields: Field name -> its current input widget (a schema), or ``{"answer": Text}``.
        message: Shows the rejection reason (a new widget for each rejection).
        inputs: The fields (or choice buttons) and the message, above the submit button.
        countdown: Time left and the default (only with a timeout).
    """

    def __init__(self, request: HumanRequest) -> None:
        self.request = request
        self.closed = False
        self.fresh_after_sync = False
        self._ticker: asyncio.Task[None] | None = None
        self._seen_tries = request.tries
        # the prompt keeps its line breaks (pre-wrap), and is escaped text, never HTML
        self.header = widgets.HTML(
            f'<span style="{_MUTED_STYLE}">{_text(request.state)}</span> &nbsp;'
            f'<b style="white-space:pre-wrap">{_text(request.prompt, 2000)}</b>'
        )
        self.message = widgets.HTML("")
        self.countdown = widgets.HTML("")
        self.fields: dict[str, widgets.Widget] = {}
        self._makers: dict[str, Any] = {}
        self._slots: dict[str, widgets.Box] = {}  # one box per field: renewing it redraws nothing else
        self._received: set[str] = set()  # fields whose current widget got a value
        self._retired: list[widgets.Widget] = []  # replaced widgets, open until the form closes
        self._carrying = False  # handing a replaced field's late value to its successor
        self.choice_buttons: list[widgets.Button] = []
        self.submit: widgets.Button | None = None
        self._choices_box: widgets.HBox | None = None
        if request.choices is not None:
            for choice in request.choices:
                button = widgets.Button(description=str(choice), tooltip=str(choice))
                button.on_click(lambda _b, value=choice: self._answer(value))
                self.choice_buttons.append(button)
            self._choices_box = widgets.HBox(self.choice_buttons)
        else:
            if request.schema is not None:
                for name, info in request.schema.model_fields.items():  # type: ignore[attr-defined]
                    self._makers[name] = lambda value=_KEEP, name=name, info=info: _field_widget(name, info, value)
            else:
                self._makers["answer"] = _answer_widget
            for name, make in self._makers.items():
                self.fields[name] = self._watch(name, make())
                self._slots[name] = widgets.Box([self.fields[name]])
            self.submit = widgets.Button(description="Submit", button_style="primary")
            self.submit.on_click(lambda _b: self._answer(self.values()))
        if request.timeout is not None:
            self._tick()
        self.inputs = widgets.VBox(self._input_children())
        super().__init__(self._compose(), layout=widgets.Layout(border="1px solid #ccc", padding="4px",
                                                                margin="2px 0"))
        if request.rejection:
            self.show_rejection(request.rejection)
        if request.timeout is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._ticker = loop.create_task(self._count_down())

    def _input_children(self) -> tuple[widgets.Widget, ...]:
        if self._choices_box is not None:
            return (self._choices_box, self.message)
        return (*self._slots.values(), self.message)

    def _compose(self) -> list[widgets.Widget]:
        body: list[widgets.Widget] = [self.header, self.inputs]
        if self.submit is not None:
            body.append(self.submit)
        if self.request.timeout is not None:
            body.append(self.countdown)
        return body

    # -- fresh input widgets -------------------------------------------------------------------
    # The JupyterLab widget manager sends one value sync per widget model and holds any further
    # sync of that model until the kernel reports idle for the first. A busy cell (a blocking run,
    # or a cell awaiting a background run; ipykernel 7.4) never reports it, so a field edited a
    # second time would never arrive. A fresh widget (new model) carrying the same value is never
    # held back: forms renew a field after its value arrived and the answer was rejected, and
    # after every received value in blocking mode. Races this handles:
    # - the swap only changes the field's own slot box, so the other fields (maybe being typed
    #   in), the submit button and the message keep their views;
    # - a rejection message is a new HTML widget that arrives in ONE update of ``inputs``'
    #   children together with new slots for the renewed fields: the frontend removes the old
    #   views before it can draw the new message, so when a person reads it, the field they can
    #   type into is the one displayed (updates of different widgets may render in any order);
    #   the submit button is outside ``inputs``, so its view is never redrawn under a click;
    # - a value typed into the old field just before the swap may still arrive after it (an idle
    #   kernel); the old widget stays open and hands it to its successor, unless the person has
    #   typed into the successor already.
    def _watch(self, name: str, widget: widgets.Widget) -> widgets.Widget:
        widget.observe(lambda change: self._value_arrived(name, widget, change), names="value")
        return widget

    def _value_arrived(self, name: str, widget: widgets.Widget, change: Any) -> None:
        if self.closed:
            return
        current = self.fields.get(name)
        if widget is not current:  # a late value of a replaced field
            if current is not None and name not in self._received:
                self._carrying = True
                try:
                    current.value = change["new"]  # shown in the new field; its own sync stays unused
                finally:
                    self._carrying = False
            return
        if self._carrying:
            return
        self._received.add(name)
        if not self.fresh_after_sync:
            return
        try:
            asyncio.get_running_loop().call_soon(self._renew, name)
        except RuntimeError:
            self._renew(name)

    def _renew(self, name: str, *, new_slot: bool = False) -> None:
        if self.closed or name not in self._received:
            return
        old = self.fields[name]
        self.fields[name] = self._watch(name, self._makers[name](old.value))
        self._received.discard(name)
        self._retired.append(old)
        if new_slot:  # shown by the caller's update of the form's children
            self._retired.append(self._slots[name])
            self._slots[name] = widgets.Box([self.fields[name]])
        else:
            self._slots[name].children = (self.fields[name],)

    def renew_fields(self) -> None:
        """Replace every input widget that received a value by a fresh one holding that value.

        Fields never edited keep their widget (their one value sync is still unused).
        """
        for name in list(self.fields):
            self._renew(name)

    # -- reading and answering -----------------------------------------------------------------
    def values(self) -> Any:
        """What the form holds: the text (plain request) or a dict of fields (schema)."""
        if self.request.schema is None:
            return self.fields["answer"].value
        out = {}
        for name, widget in self.fields.items():
            value = widget.value
            if isinstance(widget, widgets.Text) and value == "":
                continue  # empty: the field's default applies (or pydantic says it is missing)
            out[name] = value
        return out

    def _answer(self, value: Any) -> None:
        if self.closed:
            return
        try:
            self.request.answer(value, source="person")
        except HumanInputError:
            self.collapse("closed before this answer arrived", ok=False)

    # -- showing state ---------------------------------------------------------------------------
    def show_rejection(self, message: str) -> None:
        """Show why the last answer was rejected, with renewed inputs for the next try."""
        text = f'<span style="{_ERROR_STYLE}">✗ {_text(message, 1000)}</span>'
        if self.request.tries == self._seen_tries or self.closed:
            self.message.value = text  # the same try, shown again (or the form's first drawing)
            return
        self._seen_tries = self.request.tries
        for name in list(self.fields):
            self._renew(name, new_slot=True)
        self._retired.append(self.message)
        self.message = widgets.HTML(text)
        self.inputs.children = self._input_children()  # one update: fresh fields and the message

    def _tick(self) -> None:
        req = self.request
        left = req.remaining()
        then = (f"then the default {_text(req.default)} is used" if req.default is not None
                else "then the state fails (no default)")
        seconds = req.timeout if left is None else left
        self.countdown.value = f'<span style="{_MUTED_STYLE}">⏱ {seconds:.0f} s left, {then}</span>'

    async def _count_down(self) -> None:
        while not self.closed and self.request.is_open:
            self._tick()
            await asyncio.sleep(1.0)

    def collapse(self, text: str, *, ok: bool = True) -> None:
        """Replace the form by a one-line record of what happened."""
        if self.closed:
            return
        self.closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        mark = "✓" if ok else "✗"
        line = self.header  # reused: collapsing opens no new widgets, so it costs few messages
        line.value = (f'<span style="{_MUTED_STYLE}">{mark} {_text(self.request.state)}: {_text(self.request.prompt)}'
                      f" → {text}</span>")
        self.children = (line,)
        self.layout.border = ""
        for old in self._retired:
            old.close()
        self._retired.clear()

    def __repr__(self) -> str:
        return f"<HumanForm {self.request.request_id} {self.request.prompt!r} closed={self.closed}>"


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
        self._unsubscribe = agent.events.subscribe(self._on_event)
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

    def show(self, request: HumanRequest) -> HumanForm:
        """The form of ``request`` (added if new; a re-ask shows the rejection)."""
        form = self.forms.get(request.request_id)
        if form is None:
            form = self.forms[request.request_id] = HumanForm(request)
            self.children = (*self.children, form)  # type: ignore[has-type]
        elif request.rejection:
            form.show_rejection(request.rejection)
        return form

    def open_forms(self) -> list[HumanForm]:
        """Forms still waiting for an answer."""
        return [f for f in self.forms.values() if not f.closed]

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (HumanAnswered, HumanWithdrawn)):
            # redraw a moment later, once the waiting state has resumed (that takes a few loop
            # iterations): the person's answer is never delayed by the UI
            try:
                asyncio.get_running_loop().call_later(REDRAW_DELAY, self._handle, event)
                return
            except RuntimeError:
                pass
        self._handle(event)

    def _handle(self, event: Event) -> None:
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
            answer = _text(event.value)
            how = {"person": "", "default": " (default, nobody answered in time)", "replay": " (replayed)"}
            note = how.get(event.source, f" ({_text(event.source)})")
            took = f" after {event.waited:.1f} s" if event.source == "person" else ""
            if form is not None:
                form.collapse(f"<b>{answer}</b>{note}{took}")
        elif isinstance(event, HumanWithdrawn):
            form = self.forms.get(event.request_id)
            if form is not None:
                request = form.request
                why = "nobody answered in time" if request.status == "timed_out" else "withdrawn (state cancelled)"
                form.collapse(why, ok=False)

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
        form = area.show(request)
        if _is_blocking(self._agent):
            form.fresh_after_sync = True
        if not self._checked:
            self._checked = True
            _check_kernel(self._agent)
        if self.display and not area.shown:
            area.shown = True
            from IPython.display import display

            display(area)

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
