// Keyboard shortcuts for the rater's page (the page works without this script):
// 1 / 2 / 3 (or a / b / c) choose A, B or "can't tell" and move to the justification;
// Ctrl+Enter (Cmd+Enter) saves. On a wide screen the persona stays open beside the item.
"use strict";
(function () {
  var KEYS = { "1": "A", "a": "A", "2": "B", "b": "B", "3": "cant_tell", "c": "cant_tell" };

  function typing(target) {
    return target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLInputElement && target.type !== "radio");
  }

  document.addEventListener("keydown", function (event) {
    var form = document.getElementById("answer-form");
    if (!form) { return; }
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var value = KEYS[event.key.toLowerCase()];
    if (!value) { return; }
    event.preventDefault();
    var input = form.querySelector('input[name="choice"][value="' + value + '"]');
    if (input) { input.checked = true; }
    document.getElementById("justification").focus();
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (window.matchMedia("(min-width: 60rem)").matches) {
      document.querySelectorAll("details.persona").forEach(function (d) { d.open = true; });
    }
  });
})();
