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
