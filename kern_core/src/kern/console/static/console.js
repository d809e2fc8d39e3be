// kern console: approve and reject without reloading the page. Without this script the
// forms post and redirect back, which works the same.
"use strict";
document.addEventListener("submit", async (event) => {
  const form = event.target;
  const api = form.getAttribute("data-api");
  const item = form.closest("li.proposal");
  if (!api || !item) return;
  event.preventDefault();
  const csrf = document.querySelector('meta[name="csrf-token"]');
  const response = await fetch(api, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf ? csrf.content : "", Accept: "application/json" },
  }).catch(() => null);
  if (response === null) { form.submit(); return; }
  const body = await response.json().catch(() => ({}));
  const status = item.querySelector("p.decision");
  status.hidden = false;
  if (response.ok) {
    item.classList.add("decided");
    item.querySelector(".actions").remove();
    status.textContent = body.action;
  } else {
    status.textContent = typeof body.detail === "string" ? body.detail : "refused (" + response.status + ")";
  }
});
