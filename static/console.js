// Shows every <time datetime="..."> in the viewer's own timezone.
(function () {
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.title = when.toISOString();
      el.textContent = el.dataset.format === "time"
        ? when.toLocaleTimeString()
        : when.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"});
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSwap", function (e) { localise(e.target); });
})();
