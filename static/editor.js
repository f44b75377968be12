// The workflow editor: CodeMirror on code cards, reordering by drag (SortableJS, as in htmx's
// sortable example) and by keyboard, a warning before leaving with unsaved changes, copy
// buttons. Every form also works without this file (plain posts and redirects).
(function () {
  "use strict";

  function anyDirty(except) {
    return Array.prototype.some.call(document.querySelectorAll("form[data-dirty]"), function (f) {
      return f !== except;
    });
  }

  function markDirty(form) {
    if (form && form.matches(".step-form, .input-form")) form.setAttribute("data-dirty", "1");
  }

  function focusNext(ta) {
    var card = ta.closest(".card-body") || document;
    var next = card.querySelector(".settings summary, .save");
    if (next) next.focus();
  }

  function initCode(ta) {
    if (!window.CodeMirror || ta.dataset.cm) return;
    ta.dataset.cm = "1";
    var form = ta.form;
    var cm = window.CodeMirror.fromTextArea(ta, {
      mode: "python",
      lineNumbers: true,
      indentUnit: 4,
      tabSize: 4,
      matchBrackets: true,
      viewportMargin: Infinity,
      extraKeys: {
        Tab: function (cm) {
          if (cm.somethingSelected()) cm.indentSelection("add");
          else cm.replaceSelection("    ", "end");
        },
        "Shift-Tab": "indentLess",
        // Tab indents inside the editor; Esc leaves it for the next control.
        Esc: function () { focusNext(ta); },
        "Ctrl-S": function () { if (form) form.requestSubmit(); },
        "Cmd-S": function () { if (form) form.requestSubmit(); }
      }
    });
    cm.getInputField().setAttribute("aria-label", "Code of step " + (ta.closest("[data-step]") || {dataset: {}}).dataset.step + " (Esc to leave the editor)");
    ta.codeMirror = cm;
    cm.on("change", function () {
      cm.save(); // htmx posts the textarea: keep it current
      markDirty(form);
    });
    var line = parseInt(ta.dataset.errorLine || "", 10);
    if (line > 0 && line <= cm.lineCount()) {
      cm.addLineClass(line - 1, "background", "cm-error-line");
      cm.addLineClass(line - 1, "gutter", "cm-error-gutter");
      cm.scrollIntoView({line: line - 1, ch: 0}, 40);
    }
  }

  function initSortable(list) {
    if (!window.Sortable || list.dataset.sortable) return;
    list.dataset.sortable = "1";
    var sortable = new window.Sortable(list, {
      animation: 150,
      handle: ".drag-handle",
      draggable: ".step-card",
      ghostClass: "drag-ghost",
      // Pointer events rather than native drag and drop: the same on touch screens.
      forceFallback: true,
      fallbackTolerance: 3,
      filter: ".htmx-indicator",
      onMove: function (evt) {
        return evt.related.className.indexOf("htmx-indicator") === -1;
      },
      // Disabled until the server answers, so that a second drag cannot race the first.
      onEnd: function () { this.option("disabled", true); }
    });
    list.addEventListener("htmx:afterSwap", function () { sortable.option("disabled", false); });
  }

  function syncRevision() {
    var current = document.getElementById("draft-revision");
    if (!current) return; // after a refused save: keep the stale revision until a reload
    document.querySelectorAll('input[name="revision"]').forEach(function (input) {
      if (input !== current) input.value = current.value;
    });
  }

  function focusRequested(root) {
    var holder = root.matches && root.matches("[data-focus]") ? root : root.querySelector && root.querySelector("[data-focus]");
    if (!holder) return;
    var target = document.querySelector(holder.getAttribute("data-focus"));
    holder.removeAttribute("data-focus");
    var body = target && target.closest(".card-body[hidden]");
    if (body) setCard(body.closest(".step-card"), true);
    if (target && target.disabled) {
      var card = target.closest(".step-card");
      target = card && card.querySelector(".card-title");
    }
    if (target) {
      target.focus();
      if (target.scrollIntoView) target.scrollIntoView({block: "center"});
    }
  }

  function setMode(form) {
    var checked = form.querySelector("input[data-input-mode]:checked");
    if (!checked) return;
    form.querySelectorAll("[data-mode]").forEach(function (el) {
      el.hidden = el.getAttribute("data-mode") !== checked.value;
    });
  }

  // A card is either its one-line outline (name, kind, summary) or its whole form. What the
  // person chose survives the pipeline being redrawn (a move, a new step).
  var chosen = {};
  function setCard(card, open) {
    if (!card) return;
    chosen[card.dataset.step] = open;
    var toggle = card.querySelector(".collapse-toggle");
    var body = card.querySelector(".card-body");
    var word = open ? "Collapse" : "Expand";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    toggle.setAttribute("aria-label", word + " " + card.dataset.step);
    toggle.textContent = word;
    card.classList.toggle("outlined", !open);
    if (!body) return;
    body.hidden = !open;
    if (open) body.querySelectorAll("textarea.code-editor").forEach(function (ta) {
      if (ta.codeMirror) ta.codeMirror.refresh();
    });
  }

  htmx.onLoad(function (root) {
    if (!root.querySelectorAll) return;
    root.querySelectorAll("textarea.code-editor").forEach(initCode);
    var cards = root.matches && root.matches(".step-card") ? [root] : root.querySelectorAll(".step-card");
    Array.prototype.forEach.call(cards, function (card) {
      if (card.dataset.step in chosen) setCard(card, chosen[card.dataset.step]);
    });
    if (root.matches && root.matches(".sortable")) initSortable(root);
    root.querySelectorAll(".sortable").forEach(initSortable);
    root.querySelectorAll(".input-form").forEach(setMode);
    focusRequested(root);
    syncRevision();
  });

  document.addEventListener("input", function (e) {
    if (e.target.matches && !e.target.matches(".sample")) markDirty(e.target.form);
  });
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("input[data-input-mode]")) setMode(e.target.form);
    if (e.target.matches && !e.target.matches(".sample")) markDirty(e.target.form);
  });

  // Leaving the page with unsaved cards asks first.
  window.addEventListener("beforeunload", function (e) {
    if (anyDirty(null) && !window.__editorLeaving) {
      e.preventDefault();
      e.returnValue = "";
    }
  });

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { e.preventDefault(); return; }
    // A plain post (publish, import) of a page with unsaved cards: the browser asks on unload.
  });

  // Structural changes redraw the pipeline: unsaved text in other cards would be lost.
  document.body.addEventListener("htmx:confirm", function (e) {
    var elt = e.detail.elt;
    if (!elt.matches || !elt.matches("[data-structural], .sortable")) return;
    var own = elt.classList.contains("delete") ? elt.form : null;
    if (!anyDirty(own)) return;
    e.preventDefault();
    if (window.confirm("Some cards have unsaved changes, which this will discard. Continue?")) {
      e.detail.issueRequest(true);
    }
  });

  // Refused saves (422 problems, 409 edit conflicts) come back as cards to show.
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    var status = e.detail.xhr.status;
    if (status === 409 || status === 422) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });

  document.addEventListener("click", function (e) {
    var toggle = e.target.closest && e.target.closest(".collapse-toggle");
    if (toggle) {
      setCard(toggle.closest(".step-card"), toggle.getAttribute("aria-expanded") !== "true");
      return;
    }
    var all = e.target.closest && e.target.closest(".outline-toggle, .expand-all");
    if (all) {
      var expand = all.classList.contains("expand-all");
      document.querySelectorAll("#steps .step-card").forEach(function (card) { setCard(card, expand); });
      var outline = document.querySelector(".outline-toggle");
      if (outline) outline.setAttribute("aria-pressed", expand ? "false" : "true");
      return;
    }
    var copy = e.target.closest && e.target.closest("button.copy");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (!source) return;
      var done = function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy"; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(source.textContent).then(done, function () {});
      } else {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copy.textContent = "Selected: press Ctrl+C";
      }
    }
  });
})();
