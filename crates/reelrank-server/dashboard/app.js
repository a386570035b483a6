// The reelrank dashboard: one page per hash route, each drawn from the same HTTP API a client
// calls. No build step; text is always set as text, never as HTML.
"use strict";

const keyInput = document.getElementById("api-key");
keyInput.value = localStorage.getItem("reelrank-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("reelrank-key", keyInput.value.trim());
  route();
});

/** Calls the API; resolves to the JSON answer, rejects with the server's error message. */
async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  const key = keyInput.value.trim();
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

/** An element with attributes (`on*` ones are listeners) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const page = document.getElementById("page");
let timer = null;

function show(...nodes) {
  page.replaceChildren(...nodes);
}

function failure(error) {
  return el("p", { class: "error", "data-testid": "error" }, error.message);
}

const number = (n, digits = 0) =>
  n === null || n === undefined ? "–" : Number(n).toLocaleString("en", { maximumFractionDigits: digits });

function tile(label, value, testid) {
  return el("div", { class: "tile" }, el("div", { class: "label" }, label), el("div", { class: "value", "data-testid": testid }, value));
}

// Overview: counts, events per second, models, latency; refreshed every two seconds.
async function overview() {
  const draw = async () => {
    try {
      const [o, experiments] = await Promise.all([api("/v1/admin/overview"), api("/v1/experiments")]);
      const trained = (m) => (m ? (m.trained_at ? new Date(m.trained_at).toLocaleString() : "loaded") : "none");
      show(
        el("h1", {}, "Overview"),
        el("div", { class: "tiles" },
          tile("Items", number(o.items), "items"),
          tile("Users", number(o.users), "users"),
          tile("Events", number(o.events), "events"),
          tile("Events per second", number(o.events_per_second, 1), "events-per-second"),
          tile("Feed p50 / p99", o.latency.requests ? `${number(o.latency.p50_ms, 1)} / ${number(o.latency.p99_ms, 1)} ms` : "–", "latency"),
          tile("Feeds measured", number(o.latency.requests), "feeds")),
        el("h2", {}, "Models"),
        el("table", {},
          el("tr", {}, el("th", {}, "Model"), el("th", {}, "Trained")),
          el("tr", {}, el("td", {}, "Two-tower retrieval"), el("td", {}, trained(o.models.retrieval))),
          el("tr", {}, el("td", {}, "Wide&Deep ranking"), el("td", {}, trained(o.models.ranking))),
          el("tr", {}, el("td", {}, "Version served"), el("td", { "data-testid": "model-version" }, o.model_version))),
        el("h2", {}, "A/B variants"),
        experiments.variants.length === 0
          ? el("p", { class: "note" }, "No experiment is configured.")
          : el("table", {},
              el("tr", {}, ...["Variant", "Share", "Impressions", "Effective plays", "Finishes", "Likes"].map((h) => el("th", {}, h))),
              experiments.variants.map((v) => el("tr", {},
                el("td", {}, v.name), el("td", {}, `${number(v.share * 100)} %`), el("td", {}, number(v.stats.impressions)),
                el("td", {}, `${number(v.effective_play_rate * 100, 1)} %`), el("td", {}, `${number(v.finish_rate * 100, 1)} %`),
                el("td", {}, `${number(v.like_rate * 100, 1)} %`)))),
      );
    } catch (error) {
      show(el("h1", {}, "Overview"), failure(error));
    }
  };
  await draw();
  timer = setInterval(draw, 2000);
}

const palette = ["#d9480f", "#1d5fd1", "#0a7d32", "#7048e8", "#c2255c", "#0c8599", "#e67700"];
const colour = (text) => palette[[...text].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % palette.length];

// Feed preview: a user's feed as cards with sources and reasons, their interest tags, and actions
// that change the next feed.
async function feed() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const user = el("input", { id: "user", list: "users", value: params.get("user") || "", placeholder: "user id", "data-testid": "user" });
  const list = el("datalist", { id: "users" });
  const results = el("div", {});
  user.addEventListener("input", async () => {
    try {
      const found = await api(`/v1/admin/users?prefix=${encodeURIComponent(user.value)}&limit=20`);
      list.replaceChildren(...found.users.map((u) => el("option", { value: u.user_id })));
    } catch (_) { /* suggestions are optional */ }
  });
  const load = async () => {
    const id = user.value.trim();
    if (!id) return;
    history.replaceState(null, "", `#feed?user=${encodeURIComponent(id)}`);
    try {
      const [items, tags] = await Promise.all([
        api(`/v1/recommend?user_id=${encodeURIComponent(id)}&n=12`),
        api(`/v1/users/${encodeURIComponent(id)}/tags`),
      ]);
      results.replaceChildren(tagsPanel(id, tags, load), cards(id, items, load));
    } catch (error) {
      results.replaceChildren(failure(error));
    }
  };
  show(
    el("h1", {}, "Feed preview"),
    el("div", { class: "controls" },
      el("label", {}, "User", user, list),
      el("button", { class: "primary", onclick: load, "data-testid": "show-feed" }, "Show feed")),
    el("p", { class: "note" }, "Each refresh is a real feed: items shown are logged and not shown again."),
    results,
  );
  user.addEventListener("keydown", (e) => e.key === "Enter" && load());
  await load();
}

function tagsPanel(user, tags, reload) {
  const remove = (tag) => async () => {
    await api(`/v1/users/${encodeURIComponent(user)}/tags/${encodeURIComponent(tag)}`, { method: "DELETE" });
    await reload();
  };
  return el("div", {},
    el("h2", {}, "Interest tags"),
    tags.tags.length === 0
      ? el("p", { class: "note" }, "None yet: the user has not enjoyed anything lately.")
      : el("div", { class: "tags", "data-testid": "tags" },
          tags.tags.slice(0, 15).map((t) => el("span", { class: "tag", "data-tag": t.tag },
            `${t.tag} `, el("small", {}, number(t.weight, 2)),
            el("button", { title: `Stop using ${t.tag}`, "aria-label": `delete ${t.tag}`, onclick: remove(t.tag) }, "×")))),
    tags.hidden.length ? el("p", { class: "note" }, `Deleted: ${tags.hidden.join(", ")}`) : null);
}

function cards(user, feedAnswer, reload) {
  const act = (item, kind) => async () => {
    if (kind === "not_interested") {
      await api(`/v1/users/${encodeURIComponent(user)}/not-interested`, { method: "POST", body: JSON.stringify({ item_id: item.item_id }) });
    } else {
      const event = { user_id: user, item_id: item.item_id, kind, ts: new Date().toISOString(), request_id: feedAnswer.request_id };
      await api("/v1/events", { method: "POST", body: JSON.stringify([event]) });
    }
    await reload();
  };
  const minutes = (s) => (s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`);
  return el("div", {},
    el("h2", {}, `Feed (${feedAnswer.personalised ? "personalised" : "not personalised"}, model ${feedAnswer.model_version})`),
    feedAnswer.watch_capped ? el("p", { class: "note" }, "Minor mode: today's watch time is used up.") : null,
    el("div", { class: "cards", "data-testid": "cards" },
      feedAnswer.items.map((item) => el("div", { class: "card", "data-item": item.item_id },
        el("div", { class: "thumb", style: `background:${colour(item.category)}` }, item.category.slice(0, 1).toUpperCase()),
        el("div", { class: "body" },
          el("div", { class: "title" }, item.title || item.item_id),
          el("div", { class: "meta" }, [item.category, item.creator_id, item.duration_s && minutes(item.duration_s)].filter(Boolean).join(" · ")),
          el("span", { class: "source" }, item.source.replaceAll("_", " ")),
          el("ul", {}, item.reasons.map((r) => el("li", {}, r)))),
        el("div", { class: "actions" },
          el("button", { onclick: act(item, "finish") }, "Finish"),
          el("button", { onclick: act(item, "like") }, "Like"),
          el("button", { onclick: act(item, "not_interested"), "data-testid": "not-interested" }, "Not interested"))))));
}

// Charts: the category tables of the industry's weekly lists.
async function charts() {
  const categories = ["all", "micro_drama", "series", "variety", "movie", "documentary", "animation", "short_video"];
  const category = el("select", { "data-testid": "category" }, categories.map((c) => el("option", { value: c }, c.replace("_", " "))));
  const period = el("select", { "data-testid": "period" }, ["week", "day"].map((p) => el("option", { value: p }, p)));
  const date = el("input", { type: "date", "data-testid": "date" });
  const asked = new URLSearchParams(location.hash.split("?")[1] || "");
  if (categories.includes(asked.get("category"))) category.value = asked.get("category");
  if (["week", "day"].includes(asked.get("period"))) period.value = asked.get("period");
  if (asked.get("date")) date.value = asked.get("date");
  const table = el("div", {});
  const load = async () => {
    const query = new URLSearchParams({ category: category.value, period: period.value, limit: "50" });
    if (date.value) query.set("date", date.value);
    try {
      const chart = await api(`/v1/charts?${query}`);
      if (!date.value) date.value = chart.to;
      const change = (c) => el("span", { class: c.startsWith("↑") ? "up" : c.startsWith("↓") ? "down" : c === "New" ? "new" : "" }, c);
      table.replaceChildren(
        el("p", { class: "note" }, `${chart.from} to ${chart.to}: ${number(chart.effective_plays)} effective plays, ${number(chart.items_ranked)} items ranked.`),
        el("table", { "data-testid": "chart" },
          el("tr", {}, ...["Rank", "Change", "Title", "Share", "Heat", "Effective plays", "Days online"].map((h) => el("th", {}, h))),
          chart.rows.map((r) => el("tr", { "data-item": r.item_id },
            el("td", {}, r.rank), el("td", {}, change(r.change)), el("td", {}, r.title, el("br"), el("small", { class: "note" }, r.item_id)),
            el("td", {}, `${number(r.share * 100, 2)} %`), el("td", {}, number(r.heat, 1)), el("td", {}, number(r.effective_plays)),
            el("td", {}, r.days_online)))));
    } catch (error) {
      table.replaceChildren(failure(error));
    }
  };
  for (const control of [category, period, date]) control.addEventListener("change", load);
  show(el("h1", {}, "Charts"),
    el("div", { class: "controls" }, el("label", {}, "Category", category), el("label", {}, "Period", period), el("label", {}, "Date", date)),
    table);
  await load();
}

// Models: how each was trained (its curves per epoch) and what it has learned while serving.
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** A line chart of `series` ([{name, points: [[x, y]...]}]) over epochs. */
function lineChart(title, series) {
  const [w, h, left, bottom] = [420, 220, 48, 28];
  const points = series.flatMap((s) => s.points);
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const x = (v) => left + ((v - x0) / (x1 - x0)) * (w - left - 10);
  const y = (v) => 10 + (1 - (v - y0) / (y1 - y0)) * (h - bottom - 10);
  const lines = series.map((s, i) => svg("polyline", {
    points: s.points.map(([a, b]) => `${x(a)},${y(b)}`).join(" "), fill: "none", stroke: palette[i % palette.length], "stroke-width": 2,
  }));
  const labels = [y0, (y0 + y1) / 2, y1].map((v) => svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#667085" }, v.toFixed(3)));
  const axis = svg("text", { x: (left + w) / 2, y: h - 6, "text-anchor": "middle", "font-size": 11, fill: "#667085" }, "epoch");
  const legend = el("div", { class: "note" }, series.map((s, i) => el("span", { style: `color:${palette[i % palette.length]};margin-right:1em` }, `■ ${s.name}`)));
  return el("div", { class: "tile" }, el("div", { class: "label" }, title),
    svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", "data-testid": "curve" },
      svg("line", { x1: left, y1: h - bottom, x2: w - 10, y2: h - bottom, stroke: "#cfd4dc" }), lines, labels, axis),
    legend);
}

/** The charts of one training log: the loss per stage, and each validation metric. */
function trainingCharts(name, log) {
  if (!log) return el("p", { class: "note" }, `${name}: not trained yet (reelrank train).`);
  const stages = [...new Set(log.curves.map((c) => c.stage))];
  const loss = stages.map((stage) => ({ name: stage, points: log.curves.filter((c) => c.stage === stage).map((c) => [c.epoch, c.loss]) }));
  const metrics = [...new Set(log.curves.flatMap((c) => c.metrics.map(([m]) => m)))];
  const charts = metrics.slice(0, 8).map((metric) => lineChart(metric, stages
    .map((stage) => ({ name: stage, points: log.curves.filter((c) => c.stage === stage).flatMap((c) => c.metrics.filter(([m]) => m === metric).map(([, v]) => [c.epoch, v])) }))
    .filter((s) => s.points.length > 0)));
  return el("div", {},
    el("h2", {}, `${name}: ${log.epochs} epochs on ${number(log.examples)} examples in ${number(log.seconds, 1)} s, ${new Date(log.trained_at).toLocaleString()}`),
    el("div", { class: "charts" }, lineChart("loss", loss), charts));
}

async function models() {
  try {
    const [logs, online] = await Promise.all([api("/v1/admin/models"), api("/v1/admin/online")]);
    const row = (name, m) => el("tr", {}, el("td", {}, name), el("td", {}, number(m.learned)), el("td", {}, number(m.queued)),
      el("td", {}, number(m.dropped)), el("td", {}, number(m.table_rows)), el("td", {}, `${number(m.table_bytes / 1048576, 1)} MB`),
      el("td", {}, number(m.rollbacks)));
    show(el("h1", {}, "Models"),
      trainingCharts("Two-tower retrieval", logs.retrieval),
      trainingCharts("Wide&Deep ranking", logs.ranking),
      el("h2", {}, "Learning while serving"),
      el("p", {}, `Online learning is ${online.enabled ? (online.paused ? "paused" : "on") : "off"}; ${number(online.publications)} publications so far.`),
      el("table", { "data-testid": "online" },
        el("tr", {}, ...["Model", "Learned", "Queued", "Dropped", "Embedding rows", "Memory", "Rollbacks"].map((h) => el("th", {}, h))),
        online.two_tower ? row("Two-tower", online.two_tower) : null,
        online.ranking ? row("Wide&Deep", online.ranking) : null));
  } catch (error) {
    show(el("h1", {}, "Models"), failure(error));
  }
}

// Moderation: the review queue with its decisions, and the audit log.
async function moderation() {
  try {
    const [queue, audit] = await Promise.all([api("/v1/moderation/queue?limit=50"), api("/v1/moderation/audit?latest=true&limit=200")]);
    const decide = (item, status) => async () => {
      const reason = prompt(`Why ${status === "approved" ? "approve" : "reject"} ${item.item_id}?`);
      if (!reason) return;
      try {
        await api(`/v1/moderation/items/${encodeURIComponent(item.item_id)}`, { method: "POST", body: JSON.stringify({ status, reason }) });
        await moderation();
      } catch (error) {
        alert(`${item.item_id}: ${error.message}`);
      }
    };
    show(el("h1", {}, "Moderation"),
      el("h2", {}, `Review queue (${queue.items.length})`),
      queue.items.length === 0 ? el("p", { class: "note" }, "Nothing waits for review.") :
        el("table", { "data-testid": "queue" },
          el("tr", {}, ...["Item", "Category", "Flags", ""].map((h) => el("th", {}, h))),
          queue.items.map((item) => el("tr", { "data-item": item.item_id }, el("td", {}, item.title || item.item_id, el("br"), el("small", { class: "note" }, item.item_id)),
            el("td", {}, item.category), el("td", {}, (item.flags || []).join(", ")),
            el("td", {}, el("button", { onclick: decide(item, "approved") }, "Approve"), " ", el("button", { onclick: decide(item, "rejected") }, "Reject"))))),
      el("h2", {}, "Audit log (latest first)"),
      audit.entries.length === 0 ? el("p", { class: "note" }, "No decision yet.") :
      el("table", { "data-testid": "audit" },
        el("tr", {}, ...["When", "Who", "What", "Change", "Flags", "Why"].map((h) => el("th", {}, h))),
        audit.entries.map((e) => el("tr", { "data-seq": e.seq }, el("td", {}, new Date(e.at).toLocaleString()), el("td", {}, e.actor),
          el("td", {}, `${e.target} ${e.target_id}`), el("td", {}, e.from_status ? `${e.from_status} → ${e.to_status}` : ""),
          el("td", {}, e.flags.join(", ")), el("td", {}, e.reason)))));
  } catch (error) {
    show(el("h1", {}, "Moderation"), failure(error));
  }
}

const pages = { overview, feed, charts, models, moderation };

function route() {
  clearInterval(timer);
  const name = location.hash.slice(1).split("?")[0] || "overview";
  for (const link of document.querySelectorAll("nav a[data-page]")) link.classList.toggle("active", link.dataset.page === name);
  (pages[name] || overview)();
}

window.addEventListener("hashchange", route);
route();
