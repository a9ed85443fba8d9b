// skycat dashboard: the one script. Everything works without it; it only loads a chosen YAML
// file into the plan form's text box (a file input named by data-fills="<textarea id>").
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
});
