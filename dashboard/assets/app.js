// gocap dashboard: select-all checkbox, and live counts on the overview.
// The pages work without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('input[name="id"]').forEach((box) => { box.checked = all.checked; });
    });
  }
  const counts = document.querySelectorAll("[data-count]");
  if (counts.length === 0) return;
  const prefix = document.body.dataset.prefix || "";
  const refresh = async () => {
    try {
      const res = await fetch(prefix + "/api/stats", { headers: { Accept: "application/json" } });
      if (!res.ok) return;
      const stats = await res.json();
      counts.forEach((el) => {
        const [kind, status] = el.dataset.count.split(".");
        const n = stats[kind] && stats[kind][status];
        if (n !== undefined) el.textContent = String(n);
      });
    } catch (e) { /* offline: keep the last numbers */ }
  };
  setInterval(refresh, 3000);
});
