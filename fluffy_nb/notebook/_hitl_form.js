// The front end of fluffy_nb's human-in-the-loop form (anywidget ES module, no build step).
//
// The browser owns what the person types: field values are never synced one by one. Submit
// sends ONE custom message {event: "submit", id, values} (or {..., choice: i}); the kernel
// acknowledges the id at once ({ack: id}), then validates and answers with trait updates
// (tries/message/errors after a rejection, status "answered" plus a one-line record once
// accepted). Until the ack arrives the same message (same id) is sent again, 1 s, 2 s, 4 s...
// later: ipykernel 7.4 can queue a comm message that arrives just as one cell hands over to
// the next behind that cell, which never ends while it awaits the run. The kernel handles
// each id once. User text is only ever put into the page with textContent, never as HTML.

const EDITABLE = new Set(["INPUT", "TEXTAREA", "SELECT"]);

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function editableFocused() {
  const active = document.activeElement;
  if (!active || active === document.body) return false;
  return EDITABLE.has(active.tagName) || active.isContentEditable;
}

function render({ model, el }) {
  const root = make("div", "fluffy-form");
  // keys typed into the form are the form's: JupyterLab must not run notebook shortcuts on them
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.addEventListener("keydown", (event) => event.stopPropagation());
  el.appendChild(root);

  let inputs = {}; // field name -> its input element
  let errors = {}; // field name -> the element showing its error
  let buttons = []; // submit or choice buttons
  let message = null;
  let note = null;
  let countdown = null;
  let sending = false;
  let pending = null; // the submit message not yet acknowledged, and its resend timer

  function setSending(on, text) {
    sending = on;
    for (const button of buttons) button.disabled = on;
    if (note) note.textContent = text || "";
  }

  function collect() {
    const values = {};
    for (const [name, input] of Object.entries(inputs)) {
      if (input.type === "checkbox") values[name] = input.checked;
      else if (input.tagName === "SELECT") values[name] = Number(input.value);
      else values[name] = input.value;
    }
    return values;
  }

  function settle() {
    if (pending) clearTimeout(pending.timer);
    pending = null;
  }

  function transmit() {
    model.send(pending.message);
    pending.timer = setTimeout(() => {
      if (!pending) return;
      pending.delay = Math.min(2 * pending.delay, 8000);
      transmit();
    }, pending.delay);
  }

  function send(content) {
    if (sending) return;
    setSending(true, "sent, waiting for the kernel to accept it…");
    const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    settle();
    pending = { message: { event: "submit", id, ...content }, delay: 1000, timer: null };
    transmit();
  }

  function onCustom(msg) {
    if (msg && pending && msg.ack === pending.message.id) {
      settle();
      if (note) note.textContent = "received, checking…";
    }
  }

  function showFeedback() {
    if (!message) return;
    const text = model.get("message");
    message.textContent = text ? "✗ " + text : "";
    const fieldErrors = model.get("errors") || {};
    for (const [name, node] of Object.entries(errors)) {
      node.textContent = fieldErrors[name] || "";
      const input = inputs[name];
      if (input) input.setAttribute("aria-invalid", fieldErrors[name] ? "true" : "false");
    }
  }

  function fieldInput(field, value) {
    let input;
    if (field.kind === "checkbox") {
      input = make("input");
      input.type = "checkbox";
      input.checked = Boolean(value);
    } else if (field.kind === "select") {
      input = make("select");
      field.options.forEach((label, i) => {
        const option = make("option", "", label);
        option.value = String(i);
        input.appendChild(option);
      });
      input.value = String(value ?? 0);
    } else {
      input = make("input");
      input.type = "text";
      if (field.kind === "number") input.inputMode = "decimal";
      input.value = value ?? "";
      if (field.placeholder) input.placeholder = field.placeholder;
    }
    input.name = field.name;
    input.setAttribute("aria-label", field.title);
    return input;
  }

  function drawOpen(spec) {
    const values = model.get("values") || {};
    const head = make("div", "fluffy-form-head");
    head.appendChild(make("span", "fluffy-form-state", spec.state));
    head.appendChild(make("span", "fluffy-form-prompt", spec.prompt));
    root.appendChild(head);
    if (spec.kind === "choices") {
      const row = make("div", "fluffy-form-choices");
      spec.choices.forEach((choice, i) => {
        const button = make("button", "fluffy-form-button", choice);
        button.type = "button";
        button.title = choice;
        button.addEventListener("click", () => send({ choice: i }));
        buttons.push(button);
        row.appendChild(button);
      });
      root.appendChild(row);
    } else {
      const form = make("form", "fluffy-form-fields");
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        send({ values: collect() });
      });
      for (const field of spec.fields) {
        const label = make("label", "fluffy-form-label", field.title);
        const input = fieldInput(field, values[field.name]);
        const id = `fluffy-${model.get("request_id")}-${field.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
        input.id = id;
        label.htmlFor = id;
        const hint = make("span", "fluffy-form-hint", field.hint || "");
        const error = make("span", "fluffy-form-error");
        error.dataset.field = field.name;
        if (spec.kind === "schema") form.append(label, input, hint, error);
        else form.append(input, error);
        inputs[field.name] = input;
        errors[field.name] = error;
      }
      if (spec.kind !== "schema") form.classList.add("fluffy-form-single");
      const submit = make("button", "fluffy-form-button fluffy-form-submit", "Submit");
      submit.type = "submit";
      buttons.push(submit);
      form.appendChild(submit);
      root.appendChild(form);
      // Enter in a text box submits a form with one text field (the browser's own rule for a
      // <form> with a submit button); longer forms are sent with the button
      if (spec.fields.length > 1) {
        for (const input of Object.values(inputs)) {
          input.addEventListener("keydown", (event) => {
            if (event.key === "Enter" && input.tagName === "INPUT") event.preventDefault();
          });
        }
      }
    }
    message = make("div", "fluffy-form-message");
    message.setAttribute("role", "alert");
    note = make("div", "fluffy-form-note");
    countdown = make("div", "fluffy-form-countdown", model.get("countdown"));
    root.append(message, note, countdown);
    showFeedback();
    const first = Object.values(inputs)[0] || buttons[0];
    if (first && !editableFocused()) first.focus({ preventScroll: true });
  }

  function drawRecord() {
    const line = make("div", "fluffy-form-record " + (model.get("ok") ? "fluffy-ok" : "fluffy-not-ok"));
    line.textContent = model.get("record");
    root.appendChild(line);
  }

  function draw() {
    settle();
    root.replaceChildren();
    inputs = {};
    errors = {};
    buttons = [];
    message = note = countdown = null;
    sending = false;
    if (model.get("status") === "open") drawOpen(model.get("spec"));
    else drawRecord();
    root.dataset.status = model.get("status");
  }

  function onTries() {
    // a rejection: the person fixes what they typed (kept in the page) and sends again
    settle();
    setSending(false, "");
    showFeedback();
    const fieldErrors = model.get("errors") || {};
    const wrong = Object.keys(inputs).find((name) => fieldErrors[name]);
    const target = inputs[wrong] || Object.values(inputs)[0];
    if (target && !editableFocused()) target.focus({ preventScroll: true });
  }

  const handlers = [
    ["change:status", draw],
    ["change:record", () => model.get("status") !== "open" && draw()],
    ["change:tries", onTries],
    ["change:message", showFeedback],
    ["change:countdown", () => countdown && (countdown.textContent = model.get("countdown"))],
    ["msg:custom", onCustom],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);
  draw();
  return () => {
    settle();
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

export default { render };
