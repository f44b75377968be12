// Tasks, Approvals and the run page: the live poll's parameters, the viewer's timezone for
// the time filters, elapsed times that tick, focus after an action, and the Re-run dialog.
(function () {
  // The live poll asks only about cards that can still change, each with the stamp it has;
  // with none left on the page, no request is made at all.
  document.addEventListener("htmx:configRequest", function (e) {
    var poller = e.detail.elt;
    if (poller.id !== "tasks-poll") return;
    var items = [], newest = "";
    document.querySelectorAll(".run-card[data-run]").forEach(function (card) {
      if (card.dataset.run > newest) newest = card.dataset.run;
      if (card.hasAttribute("data-live")) items.push(card.dataset.run + "~" + card.dataset.stamp);
    });
    var fresh = poller.hasAttribute("data-fresh");
    if (!items.length && !fresh && !poller.hasAttribute("data-watch")) { e.preventDefault(); return; }
    e.detail.parameters.v = items.join(",");
    if (fresh) e.detail.parameters.newest = newest || "0".repeat(26);
  });

  // A poll answered after the board was redrawn (another filter) belongs to the old board.
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.elt.id === "tasks-poll" && !e.detail.elt.isConnected) e.detail.shouldSwap = false;
  });

  function fillTimezone(root) {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (err) { zone = ""; }
    root.querySelectorAll("input[data-timezone]").forEach(function (input) {
      if (!input.value) input.value = zone;
    });
  }

  function span(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + (sec < 10 ? "0" : "") + sec + "s";
    return sec + "s";
  }

  function tick(root) {
    var now = Date.now();
    root.querySelectorAll("[data-elapsed-from]").forEach(function (el) {
      var from = Date.parse(el.dataset.elapsedFrom);
      var to = el.dataset.elapsedTo ? Date.parse(el.dataset.elapsedTo) : now;
      if (isNaN(from) || isNaN(to)) return;
      var text = el.dataset.elapsedTo ? "took " + span(to - from) : span(to - from) + " so far";
      if (el.textContent !== text) el.textContent = text;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    fillTimezone(document);
    tick(document);
    setInterval(function () { tick(document); }, 1000);
  });
  document.addEventListener("htmx:load", function (e) {
    fillTimezone(e.target);
    tick(e.target);
  });
  // The run page redraws its live section as the run moves: a section the viewer opened or
  // closed stays that way (each <details data-key> remembers the viewer's choice).
  var chosen = {};
  document.addEventListener("click", function (e) {
    var summary = e.target.closest && e.target.closest("summary");
    var details = summary && summary.parentElement;
    if (!details || !details.dataset.key || !details.closest("#run-live")) return;
    chosen[details.dataset.key] = !details.open;  // the click is about to toggle it
  });
  function keepChoices(root) {
    var found = Array.prototype.slice.call(root.querySelectorAll("details[data-key]"));
    if (root.matches("details[data-key]")) found.push(root);
    found.forEach(function (d) {
      if (Object.prototype.hasOwnProperty.call(chosen, d.dataset.key)) d.open = chosen[d.dataset.key];
    });
  }
  // Applied as the new section enters the page: a mutation observer runs before anything
  // else can see it, whatever htmx's settle delay (base.html sets it to 0).
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("run-live");
    if (!live) return;  // only the run page redraws sections with <details>
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        record.addedNodes.forEach(function (node) { if (node.nodeType === 1) keepChoices(node); });
      });
    }).observe(live.parentNode, {childList: true, subtree: true});
  });

  // After an action the clicked button is gone: move focus to the answer's message.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (!e.detail || !e.detail.requestConfig || e.detail.requestConfig.verb !== "post") return;
    var message = e.target.querySelector && e.target.querySelector("[role=status][tabindex]");
    if (message) message.focus({preventScroll: true});
  });

  // The Re-run dialog: a Re-run control loads its run's form into the dialog's body; show it
  // then, modal, with focus on the first choice. Escape or Cancel closes it.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.target.id !== "rerun-dialog-body") return;
    var dialog = document.getElementById("rerun-dialog");
    if (!dialog.open) dialog.showModal();
    var first = dialog.querySelector("input[type=radio]:checked, select, textarea");
    if (first) first.focus();
  });
  document.addEventListener("click", function (e) {
    var close = e.target.closest && e.target.closest("[data-close-dialog]");
    var dialog = close && close.closest("dialog");
    if (dialog) dialog.close();
  });
  // Picking the step to re-run from means re-running from a step.
  document.addEventListener("change", function (e) {
    if (e.target.name !== "from_step" || !e.target.form || e.target.form.id !== "rerun-form") return;
    var choice = e.target.form.querySelector("input[name=mode][value=from_step]");
    if (choice) choice.checked = true;
  });
})();
