// prana's web view: what plain HTML cannot do. Everything works without it.
"use strict";
// A form's JSON fields are checked before it is sent: the error shows beside the field.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.matches("[data-json-form]")) return;
  var field = form.querySelector("[data-json]");
  var trouble = form.querySelector(".json-trouble");
  try {
    if (field.value.trim()) JSON.parse(field.value);
    trouble.hidden = true;
  } catch (error) {
    event.preventDefault();
    trouble.textContent = "This is not JSON: " + error.message;
    trouble.hidden = false;
    field.focus();
  }
});
// The drawer closes in place.
document.addEventListener("click", function (event) {
  var close = event.target.closest("[data-close-drawer]");
  if (!close) return;
  event.preventDefault();
  document.getElementById("drawer").innerHTML = "";
  history.replaceState(null, "", close.getAttribute("href"));
});
