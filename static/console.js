// Shows every <time datetime="..."> in the viewer's own timezone.
(function () {
  function localise(root) {
    var found = Array.prototype.slice.call(root.querySelectorAll("time[datetime]"));
    if (root.matches && root.matches("time[datetime]")) found.push(root);
    found.forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.title = when.toISOString();
      el.textContent = el.dataset.format === "time"
        ? when.toLocaleTimeString()
        : when.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"});
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  // htmx:load fires for every element htmx adds, out-of-band swaps included.
  document.addEventListener("htmx:load", function (e) { localise(e.target); });
})();
// The header's Menu button on narrow screens: opens and closes the sections and the account;
// Escape closes it and gives the focus back to the button.
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    var bar = document.querySelector(".topbar");
    var toggle = bar && bar.querySelector(".menu-toggle");
    if (!toggle) return;
    toggle.hidden = false;
    bar.classList.add("menu-ready");
    function set(open) {
      bar.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
    toggle.addEventListener("click", function () {
      set(toggle.getAttribute("aria-expanded") !== "true");
    });
    bar.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && bar.classList.contains("open")) {
        set(false);
        toggle.focus();
      }
    });
  });
})();
