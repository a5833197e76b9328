// carteiro webmail: keyboard shortcuts, select-all, confirmations, live updates (server-sent
// events). Plain JS, no framework; every page works without it.
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;

  function rows() { return Array.from(document.querySelectorAll("tr.msg")); }
  let cursor = -1;
  function move(delta) {
    const r = rows();
    if (!r.length) return;
    if (cursor >= 0 && r[cursor]) r[cursor].classList.remove("cursor");
    cursor = Math.max(0, Math.min(r.length - 1, cursor + delta));
    r[cursor].classList.add("cursor");
    r[cursor].querySelector("td.subject a").focus();
  }
  function click(id) { const e = document.getElementById(id); if (e) { e.click(); return true; } return false; }

  document.addEventListener("keydown", function (ev) {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    switch (ev.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "o": case "Enter": { const r = rows()[cursor]; if (r) r.querySelector("td.subject a").click(); else return; break; }
      case "r": if (!click("reply")) return; break;
      case "a": if (!click("replyall")) return; break;
      case "f": if (!click("forward")) return; break;
      case "c": click("compose-link"); break;
      case "/": { const q = document.getElementById("q"); if (q) q.focus(); break; }
      case "#": {
        if (click("delete-message")) break;
        const r = rows()[cursor];
        if (r) { r.querySelector("input[type=checkbox]").checked = true; click("delete-selected"); }
        break;
      }
      case "u": { const f = document.querySelector(".folders li.current a") || document.querySelector(".folders a"); if (f) f.click(); break; }
      default: return;
    }
    ev.preventDefault();
  });

  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.id === "selectall") {
      document.querySelectorAll("tr.msg input[type=checkbox]").forEach(function (c) { c.checked = ev.target.checked; });
    }
  });
  document.addEventListener("click", function (ev) {
    const b = ev.target.closest && ev.target.closest("[data-confirm]");
    if (b && !window.confirm(b.dataset.confirm)) ev.preventDefault();
  });

  // Live updates: the server holds IMAP IDLE and sends "change"; we fetch the list again.
  const live = document.getElementById("live");
  if (live && window.EventSource) {
    let busy = false;
    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        const url = new URL(window.location.href);
        url.searchParams.set("fragment", "1");
        const resp = await fetch(url, { credentials: "same-origin" });
        if (!resp.ok) return;
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const checked = new Set(Array.from(document.querySelectorAll("tr.msg input:checked")).map(function (c) { return c.value; }));
        const list = doc.getElementById("live-list"), folders = doc.getElementById("live-folders");
        if (list) {
          live.replaceChildren(list.content.cloneNode(true));
          live.querySelectorAll("tr.msg input[type=checkbox]").forEach(function (c) { c.checked = checked.has(c.value); });
          cursor = -1;
        }
        const nav = document.getElementById("folders");
        if (folders && nav) nav.replaceChildren(folders.content.cloneNode(true));
      } finally { busy = false; }
    }
    const es = new EventSource(live.dataset.events);
    es.addEventListener("change", refresh);
    live.dataset.liveReady = "1";
    es.addEventListener("open", function () { live.dataset.liveOpen = "1"; });
  }
  void csrf;
})();
