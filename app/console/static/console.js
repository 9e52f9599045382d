// Progressive enhancement only: every page works without it. The dashboard's event list
// reloads itself every few seconds, so provisioning shows up as it happens.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const events = document.querySelector("[data-refresh]");
  if (!events) return;
  setInterval(async () => {
    if (document.hidden) return;
    const response = await fetch(events.dataset.refresh, { credentials: "same-origin" });
    if (response.ok && !response.redirected) events.innerHTML = await response.text();
  }, 3000);
});
