// skycat dashboard: the one script. Everything works without it; it only
// * loads a chosen YAML file into the plan form's text box (a file input named by
//   data-fills="<textarea id>"), and
// * keeps a page's live part (an element with an id and data-live="<ms>") following the server:
//   it fetches the same page again every <ms> (same cookie, same checks) and swaps in the new
//   part, until the new part carries data-live-final (an ended job). Logs that were scrolled to
//   their end stay at their end.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.getAttribute("data-fills"));
      var file = input.files && input.files[0];
      if (!target || !file) return;
      file.text().then(function (text) {
        target.value = text;
        target.focus();
      });
    });
  });
  follow();
});

function follow() {
  var first = document.querySelector("[data-live][id]");
  if (!first || first.hasAttribute("data-live-final")) return;
  var every = Math.max(500, Number(first.getAttribute("data-live")) || 2000);
  var busy = false;
  var timer = setInterval(function () {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) {
        // Signed out (sent to the login page) or an error page: stop, the page as loaded stays.
        if (!r.ok || r.url.indexOf("/ui/login") !== -1) {
          clearInterval(timer);
          return null;
        }
        return r.text();
      })
      .then(function (text) {
        if (text === null) return;
        var next = new DOMParser().parseFromString(text, "text/html");
        var done = false;
        document.querySelectorAll("[data-live][id]").forEach(function (part) {
          var fresh = next.getElementById(part.id);
          if (!fresh) return;
          // What the reader did to the old part (scrolled a table or log, opened figures) stays.
          var kept = {};
          part.querySelectorAll("[id]").forEach(function (el) {
            kept[el.id] = { top: el.scrollTop, left: el.scrollLeft, open: el.open,
              atEnd: el.scrollTop + el.clientHeight >= el.scrollHeight - 4 };
          });
          var focused = document.activeElement && part.contains(document.activeElement) ? document.activeElement.id : "";
          part.innerHTML = fresh.innerHTML;
          part.querySelectorAll("[id]").forEach(function (el) {
            var k = kept[el.id];
            if (el.tagName === "PRE") {
              if (!k || k.atEnd) el.scrollTop = el.scrollHeight;
              else el.scrollTop = k.top;
              return;
            }
            if (!k) return;
            if (el.tagName === "DETAILS") el.open = k.open;
            el.scrollLeft = k.left;
            el.scrollTop = k.top;
          });
          if (focused) {
            var again = document.getElementById(focused);
            if (again) again.focus();
          }
          if (fresh.hasAttribute("data-live-final")) {
            part.setAttribute("data-live-final", "");
            done = true;
          }
        });
        if (done) clearInterval(timer);
      })
      .catch(function () {
        // The server is unreachable for a moment: try again at the next tick.
      })
      .then(function () {
        busy = false;
      });
  }, every);
}
