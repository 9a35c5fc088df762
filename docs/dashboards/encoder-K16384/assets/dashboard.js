/* Feature-dashboard viewer: renders index.html and latent.html from data/*.js.
 * Data files call DASH.index(...) and DASH.block(...); blocks are loaded on demand with
 * <script> tags, so everything works from file:// without a server. */
"use strict";

window.DASH = (function () {
  const D = { data: null, blocks: {}, waiting: {} };

  D.index = function (d) { D.data = d; };
  D.block = function (d) {
    D.blocks[d.block] = d;
    (D.waiting[d.block] || []).forEach((f) => f(d));
    delete D.waiting[d.block];
  };

  function loadBlock(b, done) {
    if (D.blocks[b]) { done(D.blocks[b]); return; }
    if (D.waiting[b]) { D.waiting[b].push(done); return; }
    D.waiting[b] = [done];
    const s = document.createElement("script");
    s.src = "data/block_" + String(b).padStart(5, "0") + ".js";
    s.onerror = () => fail("could not load " + s.src);
    document.head.appendChild(s);
  }

  /* ---------------------------------------------------------------- helpers */

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") e.textContent = v;
      else if (k === "cls") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function fmt(x, digits) {
    if (x === null || x === undefined) return "–";
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a >= 1e4 || a < 1e-3) return x.toExponential((digits || 3) - 1);
    return String(Number(x.toPrecision(digits || 3)));
  }

  function pct(x) {
    if (x === null || x === undefined) return "–";
    return fmt(100 * x, 3) + "%";
  }

  function showToken(s) {
    if (s.length > 3 && /^ +$/.test(s)) return "␣×" + s.length;  /* indentation tokens */
    return s.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/\r/g, "␍") || "∅";
  }

  function fail(msg) {
    const m = document.querySelector("main");
    m.prepend(el("p", { cls: "error", text: msg }));
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  /* Bar chart: bars [{x0, x1, n, label}] on a linear x axis of log10 values. */
  function barChart(bars, opts) {
    const W = opts.width || 520, H = opts.height || 150, L = 40, B = 28, T = 8;
    const x0 = opts.xmin, x1 = opts.xmax;
    const ymax = Math.max(1, ...bars.map((b) => b.n));
    const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - 8);
    const Y = (n) => T + (H - T - B) * (1 - n / ymax);
    const g = svg("svg", { width: W, height: H, class: "chart", role: "img",
                           "aria-label": opts.label });
    g.append(svg("line", { x1: L, y1: H - B, x2: W - 8, y2: H - B, class: "axis" }));
    for (const b of bars) {
      if (!b.n) continue;
      const r = svg("rect", { x: X(b.x0), y: Y(b.n), width: Math.max(1, X(b.x1) - X(b.x0) - 1),
                              height: H - B - Y(b.n), class: "bar" });
      r.append(svg("title", {}, b.label + ": " + b.n));
      g.append(r);
    }
    for (let t = Math.ceil(x0); t <= Math.floor(x1); t += opts.tick || 1) {
      g.append(svg("line", { x1: X(t), y1: H - B, x2: X(t), y2: H - B + 4, class: "axis" }));
      const txt = svg("text", { x: X(t), y: H - B + 16, class: "tick" });
      txt.textContent = opts.tickLabel ? opts.tickLabel(t) : String(t);
      g.append(txt);
    }
    const ylab = svg("text", { x: 4, y: T + 10, class: "tick ylab" });
    ylab.textContent = String(ymax);
    g.append(ylab);
    const xl = svg("text", { x: W / 2, y: H - 2, class: "tick", "text-anchor": "middle" });
    xl.textContent = opts.xlabel;
    g.append(xl);
    return g;
  }

  /* ---------------------------------------------------------------- index page */

  function renderIndex() {
    const d = D.data, rows = d.rows, n = rows.id.length, PAGE = 100;
    const order = Array.from({ length: n }, (_, i) => i);
    let view = order.slice(), key = "freq", desc = true, page = 0;
    const tokensLower = rows.tokens.map((s) => s.toLowerCase());
    const tbody = document.querySelector("#latents tbody");
    const hasR = d.meta.responsibilities;

    function sortView() {
      const col = rows[key];
      view.sort((a, b) => {
        const x = col[a] === null ? -Infinity : col[a], y = col[b] === null ? -Infinity : col[b];
        return desc ? y - x || a - b : x - y || a - b;
      });
      document.querySelectorAll("th.sortable").forEach((th) => {
        th.classList.toggle("sorted", th.dataset.key === key);
        th.dataset.dir = th.dataset.key === key ? (desc ? "desc" : "asc") : "";
      });
    }

    function filter() {
      const q = document.getElementById("search").value.trim().toLowerCase();
      if (!q) view = order.slice();
      else if (/^#\d+$/.test(q)) view = order.filter((i) => rows.id[i] === Number(q.slice(1)));
      else view = order.filter((i) => tokensLower[i].includes(q));
      page = 0;
      sortView();
      draw();
    }

    function draw() {
      const pages = Math.max(1, Math.ceil(view.length / PAGE));
      page = Math.min(page, pages - 1);
      tbody.replaceChildren();
      for (const i of view.slice(page * PAGE, (page + 1) * PAGE)) {
        const id = rows.id[i];
        const tr = el("tr", { "data-id": id },
          el("td", {}, el("a", { href: "latent.html#" + id, text: "#" + id })),
          el("td", { cls: "num", text: pct(rows.freq[i]) }),
          el("td", { cls: "num", text: fmt(rows.max[i]) }),
          el("td", { cls: "num", text: fmt(rows.mean[i]) }),
          hasR ? el("td", { cls: "num", text: fmt(rows.usage[i]) }) : null,
          el("td", { cls: "toks", text: rows.tokens[i] }));
        tbody.append(tr);
      }
      document.getElementById("match-count").textContent =
        view.length + " of " + n + " latents";
      document.getElementById("page-label").textContent = " page " + (page + 1) + " / " + pages + " ";
    }

    document.querySelectorAll("th.sortable").forEach((th) => {
      th.addEventListener("click", () => {
        if (key === th.dataset.key) desc = !desc;
        else { key = th.dataset.key; desc = key !== "id"; }
        sortView();
        draw();
      });
    });
    document.getElementById("search").addEventListener("input", filter);
    document.getElementById("prev-page").addEventListener("click", () => { page = Math.max(0, page - 1); draw(); });
    document.getElementById("next-page").addEventListener("click", () => { page += 1; draw(); });
    sortView();
    draw();

    const h = d.density, bars = [];
    for (let i = 0; i < h.counts.length; i++) {
      bars.push({ x0: h.edges[i], x1: h.edges[i + 1], n: h.counts[i],
                  label: "10^" + h.edges[i] + " to 10^" + h.edges[i + 1] });
    }
    const first = h.counts.findIndex((c) => c > 0);
    const xmin = first < 0 ? h.edges[0] : Math.max(h.edges[0], Math.floor(h.edges[first]) - 1);
    document.getElementById("density").append(barChart(bars.filter((b) => b.x0 >= xmin), {
      xmin: xmin, xmax: 0, xlabel: "log10 firing frequency",
      label: "feature density histogram", width: 620 }));
  }

  /* ---------------------------------------------------------------- latent page */

  function tokenRow(ex, strings, maxAct, hasR) {
    const [value, rc, off, refs, acts, rs] = ex;
    /* left context | token | right context, so that the firing tokens line up in a column */
    const left = el("span", { cls: "left" }), right = el("span", { cls: "right" });
    let centre = null;
    for (let i = 0; i < refs.length; i++) {
      const s = strings[refs[i]], a = acts[i];
      const alpha = a > 0 && maxAct > 0 ? Math.min(1, a / maxAct) : 0;
      const tip = JSON.stringify(s) + "  a = " + fmt(a, 4) + (hasR ? "  r = " + fmt(rs[i], 3) : "");
      const t = el("span", { cls: "tok" + (off + i === 0 ? " centre" : ""), title: tip,
                             "data-act": a, style: "background: rgba(255, 120, 0, " + alpha.toFixed(3) + ")" });
      t.textContent = showToken(s);
      if (off + i < 0) left.append(t);
      else if (off + i === 0) centre = t;
      else right.append(t);
    }
    return el("div", { cls: "example" },
      el("span", { cls: "act", title: "activation at the highlighted token", text: fmt(value, 4) }),
      hasR ? el("span", { cls: "resp", title: "responsibility r_j = softmax(-a)_j at the highlighted token", text: "r " + fmt(rc, 3) }) : null,
      el("span", { cls: "context" }, left, centre, right));
  }

  function renderLatent() {
    const d = D.data, rows = d.rows;
    const pos = new Map(rows.id.map((id, i) => [id, i]));
    function show() {
      const id = Number(location.hash.slice(1) || rows.id[0]);
      const box = document.getElementById("latent");
      if (!pos.has(id)) {
        box.replaceChildren(el("p", { cls: "error", text: "latent #" + id + " is not in this dashboard" }));
        return;
      }
      const i = pos.get(id);
      const prev = rows.id[(i - 1 + rows.id.length) % rows.id.length];
      const next = rows.id[(i + 1) % rows.id.length];
      document.getElementById("prev-latent").href = "#" + prev;
      document.getElementById("next-latent").href = "#" + next;
      loadBlock(rows.block[i], (blk) => draw(blk.latents[id], blk.strings));
    }

    function draw(L, strings) {
      const m = d.meta, hasR = m.responsibilities;
      document.title = "latent #" + L.id + " · " + document.title.split(" · ").pop();
      const box = document.getElementById("latent");
      const facts = el("dl", { cls: "facts", id: "facts" },
        el("dt", { text: "firing frequency" }), el("dd", { id: "freq", text: pct(L.freq) + " (" + L.fires + " of " + m.n_tokens + " tokens)" }),
        el("dt", { text: "max activation" }), el("dd", { id: "max", text: fmt(L.max, 4) }),
        el("dt", { text: "mean non-zero activation" }), el("dd", { id: "mean", text: fmt(L.mean, 4) }));
      if (hasR) {
        facts.append(el("dt", { text: "usage E[r_j]" }),
          el("dd", { id: "usage", text: fmt(L.usage, 4) + " (× K = " + fmt(L.usage * m.n_latents, 3) + ")" }));
      }
      const parts = [el("h1", { text: "Latent #" + L.id }), facts];

      const edges = m.hist_edges, bars = [];
      L.hist.counts.forEach((c, k) => {
        const b = L.hist.start + k;
        bars.push({ x0: Math.log10(edges[b]), x1: Math.log10(edges[b + 1]), n: c,
                    label: fmt(edges[b]) + " to " + fmt(edges[b + 1]) });
      });
      if (bars.length) {
        const lo = Math.floor(bars[0].x0), hi = Math.ceil(bars[bars.length - 1].x1);
        parts.push(el("section", { id: "histogram" }, el("h2", { text: "Non-zero activations" }),
          barChart(bars, { xmin: lo, xmax: Math.max(hi, lo + 1), xlabel: "activation (log scale)",
                           label: "histogram of non-zero activations",
                           tickLabel: (t) => fmt(Math.pow(10, t)) })));
      }

      const maxAct = L.max || 1;
      const top = el("section", { id: "top" }, el("h2", { text: "Top activations" }),
        el("p", { cls: "note", text: "The highlighted token fires; colour is the activation on each token relative to the maximum " + fmt(L.max, 4) + "; hover for values." }));
      L.top.forEach((ex) => top.append(tokenRow(ex, strings, maxAct, hasR)));
      if (!L.top.length) top.append(el("p", { text: "This latent never fired on these tokens." }));
      parts.push(top);

      if (L.quantiles.length) {
        const q = el("section", { id: "quantiles" }, el("h2", { text: "Samples across activation quantiles" }),
          el("p", { cls: "note", text: "From a uniform sample of " + L.n_sample + " firing events, in groups of equal count by value (strongest first)." }));
        for (const g of L.quantiles.slice().reverse()) {
          const grp = el("div", { cls: "quantile" }, el("h3", { text: "quantile " + g.label }));
          g.examples.forEach((ex) => grp.append(tokenRow(ex, strings, maxAct, hasR)));
          q.append(grp);
        }
        parts.push(q);
      }

      const side = el("div", { cls: "side" });
      if (L.logits) {
        const lg = el("section", { id: "logits" }, el("h2", { text: "Output tokens (W_U · decoder direction)" }),
          el("p", { cls: "note", text: "decoder: " + (m.decoder_label || "given") }));
        for (const [name, list, cls] of [["promoted", L.logits.pos, "pos"], ["suppressed", L.logits.neg, "neg"]]) {
          const t = el("table", { cls: "logits " + cls }, el("caption", { text: name }));
          list.forEach(([s, v]) => t.append(el("tr", {}, el("td", { cls: "tokcell", text: showToken(s) }), el("td", { cls: "num", text: fmt(v, 3) }))));
          lg.append(t);
        }
        side.append(lg);
      }
      for (const name of m.near) {
        const t = el("table", { cls: "near", "data-kind": name });
        for (const [j, c] of L.near[name] || []) {
          const k = pos.get(j);
          const link = k === undefined ? el("span", { text: "#" + j, title: "not in this sample" })
                                       : el("a", { href: "#" + j, text: "#" + j });
          t.append(el("tr", {}, el("td", {}, link), el("td", { cls: "num", text: fmt(c, 3) }),
                      el("td", { cls: "toks", text: k === undefined ? "" : rows.tokens[k] })));
        }
        side.append(el("section", { cls: "near-section", id: "near-" + name },
          el("h2", { text: "Nearest latents by " + name + " cosine" }), t));
      }
      parts.push(side);
      box.replaceChildren(...parts);
      window.scrollTo(0, 0);
      document.body.dataset.ready = String(L.id);
    }
    window.addEventListener("hashchange", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!D.data) { fail("data/index.js did not load: keep the data/ folder next to this page"); return; }
    const page = document.body.dataset.page;
    try {
      if (page === "index") renderIndex();
      else if (page === "latent") renderLatent();
      if (page === "index") document.body.dataset.ready = "index";
    } catch (e) { fail("dashboard error: " + e); throw e; }
  });

  return D;
})();
