// gocap dashboard: select-all checkbox, and a live overview (counts every
// 3 seconds, chart and processors every 15). The pages work without it.
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
  const refreshCounts = async () => {
    try {
      const res = await fetch(prefix + "/api/stats", { headers: { Accept: "application/json" } });
      if (!res.ok) return;
      const stats = await res.json();
      const title = (document.querySelector("[data-estimate-title]") || { dataset: {} }).dataset.estimateTitle || "";
      counts.forEach((el) => {
        const [kind, status] = el.dataset.count.split(".");
        const n = stats[kind] && stats[kind][status];
        if (n === undefined) return;
        // An estimated count is marked "≈", its title saying why.
        const est = Boolean(stats.estimated && stats.estimated[kind] && stats.estimated[kind][status]);
        el.textContent = (est ? "≈" : "") + String(n);
        el.classList.toggle("estimate", est);
        if (est) el.title = title; else el.removeAttribute("title");
      });
    } catch (e) { /* offline: keep the last numbers */ }
  };
  // The chart and the processor list are rendered on the server: fetch the
  // page again and swap those parts in.
  const refreshLive = async () => {
    try {
      const res = await fetch(location.href);
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      document.querySelectorAll("[data-live]").forEach((el) => {
        const fresh = doc.querySelector('[data-live="' + el.dataset.live + '"]');
        if (fresh) el.replaceWith(document.importNode(fresh, true));
      });
    } catch (e) { /* keep the last picture */ }
  };
  setInterval(refreshCounts, 3000);
  setInterval(refreshLive, 15000);
});
