// The live page of the gumbel-stream monitor: polls /live.json every second and draws it.
// Hand-written, no framework; text goes in with textContent only, never as markup.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 1000;
  // The TV chart's log axis stops here: below it is floating-point noise (uniform against
  // uniform is 1e-17 before anything is learned), which would squash the real curve.
  const TV_FLOOR = 1e-4;
  const MODEL_CHARS = 40;  // a model id longer than this is shortened (the whole one: its title)
  const $ = (id) => document.getElementById(id);
  // One model at a time: ?model=<id>, or the one the monitor heard of last.
  const MODEL = new URLSearchParams(window.location.search).get("model");
  const LIVE_URL = "/live.json" + (MODEL ? "?model=" + encodeURIComponent(MODEL) : "");

  function node(tag, attrs, parent) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }
  function label(parent, x, y, s, attrs) {
    const t = node("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    t.textContent = s;
    return t;
  }
  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
  function empty(svg, message) {
    clear(svg);
    const box = svg.viewBox.baseVal;
    label(svg, box.width / 2, box.height / 2, message, { "text-anchor": "middle", class: "empty" });
  }

  const integer = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
  function tv(v) {
    if (v == null) return "–";
    return v !== 0 && v < 0.0001 ? v.toExponential(1) : v.toFixed(4);
  }
  function probability(p) { return p == null ? "–" : p.toFixed(3); }
  // At most n characters (code points, so an emoji is never cut in half), "…" for the rest.
  function shorten(s, n) {
    const chars = Array.from(String(s));
    return chars.length <= n ? String(s) : chars.slice(0, n - 1).join("") + "…";
  }
  function setText(id, s) { $(id).textContent = s; }

  function setStatus(kind, s) {
    const badge = $("status");
    badge.className = "badge " + kind;
    badge.textContent = s;
  }

  // Grouped bars: estimate, truth (when known), baseline, for each category shown.
  function drawBars(categories) {
    const svg = $("bars");
    if (!categories.length) { empty(svg, "no estimate yet"); return; }
    clear(svg);
    const W = 1000, H = 260, left = 44, right = 8, top = 16;
    // Names under narrow bars are slanted, to fit about 10 characters instead of 3.
    const slanted = (W - left - right) / categories.length < 60;
    const bottom = slanted ? 58 : 30;
    const hasTruth = categories.some((c) => c.truth != null);
    const series = hasTruth ? ["estimate", "truth", "baseline"] : ["estimate", "baseline"];
    let max = 0;
    for (const c of categories) for (const s of series) max = Math.max(max, c[s] || 0);
    const step = niceStep(Math.max(0.01, max / 4));
    max = step * Math.max(1, Math.ceil((max * 1.08) / step));
    const y = (p) => top + (H - top - bottom) * (1 - p / max);
    for (let p = 0; p <= max + step / 2; p += step) {
      node("line", { x1: left, x2: W - right, y1: y(p), y2: y(p), class: "grid" }, svg);
      label(svg, left - 6, y(p) + 4, String(+p.toFixed(3)), { "text-anchor": "end" });
    }
    const slot = (W - left - right) / categories.length;
    const bar = Math.min(36, (slot * 0.8) / series.length);
    const showValues = bar >= 22;
    // About 6.5 units a character at 11px.
    const nameChars = slanted ? 10 : Math.max(2, Math.floor(slot / 6.5));
    categories.forEach((c, i) => {
      const x0 = left + slot * i + (slot - bar * series.length) / 2;
      // The category's name, as the metrics label it (its id when the trainer sends none);
      // the rest of a large K is one bar, as category="_other" in the metrics.
      const what = c.other ? "the other " + integer(c.other) + " categories (" + c.name + ")"
        : "category " + c.name;
      series.forEach((s, j) => {
        const p = c[s] || 0;
        const r = node("rect", {
          x: x0 + j * bar + 1, y: y(p), width: Math.max(1, bar - 2),
          height: Math.max(0, y(0) - y(p)), class: s + (c.other ? " rest" : ""),
        }, svg);
        const tip = node("title", {}, r);
        tip.textContent = what + ", " + s + ": " + probability(c[s]);
        if (showValues) {
          label(svg, x0 + j * bar + bar / 2, y(p) - 3, p.toFixed(2),
            { "text-anchor": "middle", class: "value" });
        }
      });
      const cx = left + slot * i + slot / 2, cy = slanted ? H - bottom + 14 : H - 10;
      const name = label(svg, cx, cy, shorten(c.name, nameChars), slanted
        ? { "text-anchor": "end", class: "category", transform: "rotate(-40 " + cx + " " + cy + ")" }
        : { "text-anchor": "middle", class: "category" });
      node("title", {}, name).textContent = what;
    });
  }

  // 1, 2, 2.5 or 5 times a power of ten: the tick step nearest above ``raw``.
  function niceStep(raw) {
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
    return 10 * power;
  }

  // A line chart over the history window; log scale for TV, which spans decades, down to
  // ``floor`` (a value below it is drawn at it); floor null: a linear scale from 0.
  function drawLines(svg, history, windowS, now, lines, floor) {
    const log = floor != null;
    const value = (p, key) => (p[key] == null ? null : log ? Math.max(p[key], floor) : p[key]);
    const points = history.filter((p) => lines.some((l) => p[l.key] != null));
    if (points.length < 2) { empty(svg, "collecting…"); return; }
    clear(svg);
    const W = 480, H = 200, left = 48, right = 10, top = 10, bottom = 24;
    let lo = Infinity, hi = -Infinity;
    for (const p of points) for (const l of lines) {
      const v = value(p, l.key);
      if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (!isFinite(lo)) { empty(svg, "collecting…"); return; }
    let ticks;
    if (log) {
      lo = Math.max(floor, Math.pow(10, Math.floor(Math.log10(lo))));
      hi = Math.pow(10, Math.ceil(Math.log10(hi)));
      if (hi <= lo) hi = lo * 10;
      ticks = [];
      for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
    } else {
      const step = niceStep(hi > 0 ? hi / 4 : 0.25);
      lo = 0;
      hi = step * Math.max(1, Math.ceil((hi * 1.05) / step));
      ticks = [];
      for (let t = 0; t <= hi + step / 2; t += step) ticks.push(t);
    }
    const scale = log ? (v) => Math.log10(v) : (v) => v;
    const y = (v) => top + (H - top - bottom) * (1 - (scale(v) - scale(lo)) / (scale(hi) - scale(lo)));
    const start = Math.max(points[0].at, now - windowS);
    const span = Math.max(10, now - start);
    const x = (t) => left + (W - left - right) * (1 - (now - t) / span);
    for (const t of ticks) {
      node("line", { x1: left, x2: W - right, y1: y(t), y2: y(t), class: "grid" }, svg);
      let s = String(+t.toFixed(3));
      if (log) s = t >= 0.01 ? String(+t.toFixed(2)) : t.toExponential(0);
      label(svg, left - 6, y(t) + 4, s, { "text-anchor": "end" });
    }
    const step = [5, 10, 15, 30, 60, 120, 300].find((s) => span / s <= 5) || 600;
    for (let ago = 0; ago <= span + 1e-6; ago += step) {
      if (x(now - ago) < left + 20) break;  // no label under the axis' own numbers
      const s = ago === 0 ? "now" : "−" + (step < 60 ? ago + " s" : ago / 60 + " min");
      label(svg, x(now - ago), H - 6, s, { "text-anchor": ago === 0 ? "end" : "middle" });
    }
    for (const l of lines) {
      const d = points.filter((p) => p[l.key] != null)
        .map((p, i) => (i ? "L" : "M") + x(p.at).toFixed(1) + "," + y(value(p, l.key)).toFixed(1))
        .join("");
      if (d) node("path", { d: d, class: "line " + l.cls }, svg);
    }
  }

  // Records learned per second over the last ~10 s of history.
  function rate(history) {
    if (history.length < 2) return null;
    const last = history[history.length - 1];
    let first = history[0];
    for (const p of history) if (last.at - p.at <= 10) { first = p; break; }
    return last.at > first.at ? (last.learned - first.learned) / (last.at - first.at) : null;
  }

  // Links to every model the monitor keeps, when there is more than one.
  function drawModels(models, shown) {
    const nav = $("models");
    while (nav.firstChild) nav.removeChild(nav.firstChild);
    if (models.length < 2) return;
    nav.appendChild(document.createTextNode("models:"));
    for (const id of models) {
      const a = document.createElement("a");
      a.href = "?model=" + encodeURIComponent(id);
      a.textContent = shorten(id, 24);
      a.title = id;
      if (id === shown) a.className = "shown";
      nav.appendChild(a);
    }
  }

  function render(view) {
    const e = view.estimate;
    drawModels(view.models || [], e ? e.model_id : MODEL);
    const truth = view.truth_source;
    if (!e) setStatus("wait", "waiting for an estimate");
    else if (view.health.ok) setStatus("ok", "live");
    else setStatus("wait", "stale");
    $("status").title = view.health.reason;
    setText("model", e ? "model " + shorten(e.model_id, MODEL_CHARS) + " · " + e.actors +
      " actor" + (e.actors === 1 ? "" : "s") + " · step " + integer(e.step)
      : (MODEL ? "no estimate of model " + shorten(MODEL, MODEL_CHARS) : ""));
    $("model").title = e ? e.model_id : (MODEL || "");
    setText("learned", e ? integer(e.samples_learned) : "–");
    const r = rate(view.history);
    setText("rate", r != null ? "≈ " + integer(r) + " records/s" : " ");
    setText("tv-truth", e ? tv(e.tv_truth) : "–");
    // Whose truth it is: the producer's, of the model it feeds when the monitor is told which.
    let note = "vs the producer's distribution", why = "";
    if (!truth.url) note = "truth not known to the monitor";
    else if (truth.num_categories == null) note = "truth not read yet";
    else if (e && truth.model_id != null && truth.model_id !== e.model_id) {
      note = "the truth is model " + shorten(truth.model_id, 16) + "'s";
      why = "the producer at " + truth.url + " feeds model " + truth.model_id;
    } else if (e && truth.num_categories !== e.num_categories) {
      note = "truth has " + truth.num_categories + " categories";
    } else if (e && truth.model_id == null && (view.models || []).length > 1) {
      note = "vs the producer at " + truth.url.replace(/^https?:\/\//, "");
      why = "which model that producer feeds is not set (GUMBEL_MONITOR__TRUTH_MODEL_ID): " +
        "it is compared with every model of " + truth.num_categories + " categories";
    }
    setText("truth-note", note);
    $("truth-note").title = why || note;
    setText("tv-baseline", e ? tv(e.tv_baseline) : "–");
    setText("temperature", e ? e.temperature.toFixed(3) : "–");
    setText("estimator", e ? "estimator " + e.estimator : " ");
    setText("lag", e ? integer(e.consumer_lag) : "–");
    setText("dead-letters", e ? integer(e.dead_letters) : "–");
    setText("hidden-note", e && e.categories_hidden ? "showing the " +
      (view.categories.length - 1) + " largest of " + integer(e.num_categories) +
      " categories by estimate, and the other " + integer(e.categories_hidden) +
      " summed as _other (all of them: /estimate)" : "");
    drawBars(view.categories);
    const minutes = Math.round(view.history_window_s / 60) + " min";
    setText("tv-window", "last " + minutes);
    setText("tau-window", "last " + minutes);
    drawLines($("tv-chart"), view.history, view.history_window_s, view.now, [
      { key: "tv_truth", cls: "estimate" }, { key: "tv_baseline", cls: "baseline" },
    ], TV_FLOOR);
    drawLines($("tau-chart"), view.history, view.history_window_s, view.now, [
      { key: "temperature", cls: "tau" },
    ], null);
    setText("updated", "updated " + new Date(view.now * 1000).toLocaleTimeString() +
      (e ? " · estimate " + e.age_s.toFixed(1) + " s old" : "") +
      (truth.produced != null ? " · produced " + integer(truth.produced) : ""));
  }

  async function tick() {
    try {
      const reply = await fetch(LIVE_URL, { cache: "no-store" });
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      render(await reply.json());
    } catch (err) {
      setStatus("bad", "monitor unreachable");
      $("status").title = String(err);
    } finally {
      setTimeout(tick, POLL_MS);
    }
  }
  tick();
})();
