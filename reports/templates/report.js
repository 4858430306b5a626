/* rgs-shadow report: the table of all divergences and the detail views.
 *
 * Every value comes from captured traffic and is untrusted: it is only ever put into
 * the page with textContent (never innerHTML), and the page's Content-Security-Policy
 * allows this script alone, by hash. The data sits in two JSON blocks; large ones are
 * gzip + base64 and inflated here with DecompressionStream (no network involved).
 */
"use strict";
(function () {
  var PAGE = 100;
  var data = null;
  var evidence = null;
  var col = {};
  var state = { kind: "", currency: "", player: "", text: "", sort: "at", dir: 1, page: 0 };
  var view = [];

  function byId(id) { return document.getElementById(id); }

  async function readBlock(id) {
    var el = byId(id);
    var text = el.textContent;
    if (el.getAttribute("data-encoding") === "gzip+base64") {
      var bin = atob(text);
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      text = await new Response(stream).text();
    }
    return JSON.parse(text);
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function compare(a, b) {
    var k = col[state.sort];
    var x = a[k], y = b[k];
    if (state.sort === "amount_at_risk_minor") {
      /* minor units of different currencies are not comparable: currency first */
      var c = String(a[col.currency] || "").localeCompare(String(b[col.currency] || ""));
      if (c) return c;
    }
    if (x === y) return a[0] - b[0];
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * state.dir;
  }

  function applyFilters() {
    var player = state.player.toLowerCase();
    var text = state.text.toLowerCase();
    view = data.rows.filter(function (r) {
      if (state.kind && r[col.kind] !== state.kind) return false;
      if (state.currency && r[col.currency] !== state.currency) return false;
      if (player && String(r[col.player_id] || "").toLowerCase().indexOf(player) < 0) return false;
      if (text && (String(r[col.transaction_id] || "") + "\n" + String(r[col.round_id] || ""))
          .toLowerCase().indexOf(text) < 0) return false;
      return true;
    });
    view.sort(compare);
    state.page = 0;
    render();
  }

  function render() {
    var pages = Math.max(1, Math.ceil(view.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var body = byId("rows");
    var fragment = document.createDocumentFragment();
    var start = state.page * PAGE;
    view.slice(start, start + PAGE).forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", (r[col.at] || "").replace("T", " ").replace("Z", "")));
      var kind = el("td");
      var swatch = el("span", null, "swatch");
      swatch.style.background = data.colours[r[col.kind]] || "#777777";
      kind.appendChild(swatch);
      kind.appendChild(document.createTextNode(r[col.kind]));
      tr.appendChild(kind);
      var tx = el("td");
      var link = el("a", r[col.transaction_id] || "(no id)");
      link.href = "#d-" + r[col.index];
      tx.appendChild(link);
      tr.appendChild(tx);
      ["round_id", "player_id", "event"].forEach(function (name) { tr.appendChild(el("td", r[col[name]])); });
      tr.appendChild(el("td", r[col.at_risk], r[col.amount_at_risk_minor] ? "num risk" : "num"));
      ["wallet_says", "live_says", "export_says"].forEach(function (name) { tr.appendChild(el("td", r[col[name]])); });
      fragment.appendChild(tr);
    });
    body.replaceChildren(fragment);
    byId("shown").textContent = view.length + " of " + data.rows.length + " divergences";
    byId("page").textContent = "page " + (state.page + 1) + " of " + pages;
    byId("prev").disabled = state.page === 0;
    byId("next").disabled = state.page >= pages - 1;
    document.querySelectorAll("[data-sort]").forEach(function (b) {
      var on = b.getAttribute("data-sort") === state.sort;
      b.parentNode.setAttribute("aria-sort", on ? (state.dir > 0 ? "ascending" : "descending") : "none");
    });
    if (!document.body.hasAttribute("data-rendered")) {
      /* when the first rows showed, in ms since navigation: read by bench/report.py */
      document.body.setAttribute("data-rendered-ms", String(Math.round(performance.now())));
    }
    document.body.setAttribute("data-rendered", "1");
  }

  /* Re-indent JSON without parsing its values, so "10.00" or 10.00 shows exactly as sent. */
  function prettyJson(text) {
    try { JSON.parse(text); } catch (e) { return text; }
    var out = "", depth = 0, inString = false, pad = function (d) { return "\n" + "  ".repeat(d); };
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (inString) {
        out += ch;
        if (ch === "\\") { out += text[++i]; } else if (ch === '"') { inString = false; }
        continue;
      }
      if (ch === '"') { inString = true; out += ch; }
      else if (ch === "{" || ch === "[") {
        var close = ch === "{" ? "}" : "]", j = i + 1;
        while (" \t\r\n".indexOf(text[j]) >= 0) j++;
        if (text[j] === close) { out += ch + close; i = j; } else { out += ch + pad(++depth); }
      }
      else if (ch === "}" || ch === "]") { out += pad(--depth) + ch; }
      else if (ch === ",") { out += "," + pad(depth); }
      else if (ch === ":") { out += ": "; }
      else if (" \t\r\n".indexOf(ch) < 0) { out += ch; }
    }
    return out;
  }

  function pairs(title, list) {
    var box = el("div", null, "panel");
    box.appendChild(el("h4", title));
    var table = el("table", null, "fields");
    (list || []).forEach(function (p) {
      var tr = el("tr");
      tr.appendChild(el("th", p[0]));
      tr.appendChild(el("td", p[1]));
      table.appendChild(tr);
    });
    if (!list || !list.length) box.appendChild(el("p", "(nothing recorded)", "empty"));
    else box.appendChild(table);
    return box;
  }

  function message(title, line, headers, body) {
    var box = el("div", null, "panel");
    box.appendChild(el("h4", title));
    box.appendChild(el("p", line, "line"));
    box.appendChild(el("pre", (headers || []).map(function (h) { return h[0] + ": " + h[1]; }).join("\n"), "headers"));
    box.appendChild(el("pre", body ? prettyJson(body) : "(no body)", "body"));
    return box;
  }

  async function showDetail(index) {
    var row = data.rows[index];
    var section = byId("detail");
    if (!row) { section.hidden = true; return; }
    if (evidence === null) evidence = await readBlock("evidence-data");
    byId("detail-title").textContent = row[col.kind] + " \u00b7 " + (row[col.transaction_id] || "(no id)");
    var fields = byId("detail-fields");
    fields.replaceChildren();
    data.columns.forEach(function (name, k) {
      if (name === "index") return;
      var tr = el("tr");
      tr.appendChild(el("th", name));
      var v = row[k];
      tr.appendChild(el("td", Array.isArray(v) ? v.join(", ") : v));
      fields.appendChild(tr);
    });
    var holder = byId("detail-evidence");
    holder.replaceChildren();
    var ids = row[col.capture_ids] || [];
    if (!ids.length) holder.appendChild(el("p", "No capture cited.", "empty"));
    ids.forEach(function (cid) {
      var c = evidence.captures[cid];
      var grid = el("div", null, "evidence");
      grid.appendChild(el("h3", "capture " + cid));
      if (c) {
        grid.appendChild(message("Captured request", (c[1] || "?") + " " + (c[2] || "") + " at " + (c[0] || "?"), c[3], c[4]));
        var answer = c[9] ? "no answer: " + c[9] : "HTTP " + c[5];
        if (c[8] !== null) answer += " after " + Math.round(c[8]) + " ms";
        grid.appendChild(message("Captured response", answer, c[6], c[7]));
      } else {
        grid.appendChild(el("p", "capture not found in the capture directory", "empty"));
      }
      grid.appendChild(pairs("Wallet decision", evidence.decisions[cid]));
      var exported = (evidence.exports[row[col.transaction_id]] || []);
      if (!exported.length) grid.appendChild(pairs("Export row", []));
      exported.forEach(function (e) { grid.appendChild(pairs("Export row", e)); });
      holder.appendChild(grid);
    });
    section.hidden = false;
    section.scrollIntoView();
  }

  function route() {
    var m = /^#d-(\d+)$/.exec(location.hash);
    if (m) showDetail(Number(m[1])); else byId("detail").hidden = true;
  }

  function setFilter(name, value) {
    state[name] = value;
    var input = byId("f-" + name);
    if (input) input.value = value;
    applyFilters();
    byId("all").scrollIntoView();
  }

  async function start() {
    data = await readBlock("rows-data");
    data.columns.forEach(function (name, k) { col[name] = k; });
    ["kind", "currency"].forEach(function (name) {
      byId("f-" + name).addEventListener("change", function (e) { state[name] = e.target.value; applyFilters(); });
    });
    ["player", "text"].forEach(function (name) {
      byId("f-" + name).addEventListener("input", function (e) { state[name] = e.target.value; applyFilters(); });
    });
    byId("filters").addEventListener("reset", function () {
      state.kind = state.currency = state.player = state.text = "";
      setTimeout(applyFilters, 0);
    });
    byId("filters").addEventListener("submit", function (e) { e.preventDefault(); });
    document.querySelectorAll("[data-sort]").forEach(function (b) {
      b.addEventListener("click", function () {
        var key = b.getAttribute("data-sort");
        state.dir = state.sort === key ? -state.dir : 1;
        state.sort = key;
        view.sort(compare);
        render();
      });
    });
    document.querySelectorAll("[data-filter-kind]").forEach(function (b) {
      b.addEventListener("click", function () { setFilter("kind", b.getAttribute("data-filter-kind")); });
    });
    document.querySelectorAll("[data-filter-player]").forEach(function (b) {
      b.addEventListener("click", function () { setFilter("player", b.getAttribute("data-filter-player")); });
    });
    byId("prev").addEventListener("click", function () { state.page--; render(); });
    byId("next").addEventListener("click", function () { state.page++; render(); });
    window.addEventListener("hashchange", route);
    applyFilters();
    route();
  }

  start().catch(function (e) {
    var note = el("p", "The table could not be shown: " + e, "note");
    byId("all").appendChild(note);
    throw e;
  });
})();
