// Embedtune dashboard. The pages are empty shells; everything here comes from the JSON API,
// called with the API key kept in this tab's sessionStorage (never in a URL, never in a cookie).
// No build step: plain browser JavaScript, plus uPlot (static/vendor) for the job page's curves.
"use strict";

(() => {
  const KEY = "embedtune.apiKey";
  const POLL_MS = 2000;
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
  const METRICS = [
    ["cosine_accuracy", "Cosine accuracy"],
    ["dot_accuracy", "Dot accuracy"],
    ["euclidean_accuracy", "Euclidean accuracy"],
    ["manhattan_accuracy", "Manhattan accuracy"],
    ["max_accuracy", "Max accuracy"],
    ["sts_spearman_cosine", "STS Spearman (cosine)"],
    ["sts_pearson_cosine", "STS Pearson (cosine)"],
  ];

  const $ = (id) => document.getElementById(id);

  // --- DOM helpers: text goes in as text nodes, never as HTML --------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function fmtDate(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  function fmtDuration(ms) {
    if (ms === null || ms < 0 || Number.isNaN(ms)) return "";
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function fmtNum(x, digits = 4) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
  }

  function fmtDiff(x) {
    if (x === null || x === undefined) return "–";
    return (x > 0 ? "+" : "") + Number(x).toFixed(4);
  }

  function jobDuration(job) {
    if (!job.started_at) return null;
    const end = job.finished_at ? new Date(job.finished_at) : new Date();
    return end - new Date(job.started_at);
  }

  // What the job is doing now: the API's own `phase` while it runs, else read off its state.
  function jobPhase(job) {
    switch (job.status) {
      case "queued":
        return job.attempt > 0 ? "waiting to resume" : "waiting for a worker";
      case "running":
        if (job.cancel_requested_at) return "cancelling";
        if (job.phase) return job.phase.replace(/_/g, " ");
        if (!job.progress) return "starting";
        if (job.progress.step >= job.progress.total_steps) return "evaluating and saving";
        return "training";
      case "succeeded":
        return "done";
      case "failed":
        return job.error ? job.error.code : "failed";
      default:
        return job.status;
    }
  }

  function statusBadge(status) {
    return el("span", { className: `badge status-${status}` }, status);
  }

  function progressCell(job) {
    const p = job.progress;
    if (!p) return job.status === "succeeded" ? "100%" : "";
    return el(
      "span",
      { className: "progress-cell" },
      el("progress", { max: p.total_steps || 1, value: p.step }),
      ` ${p.step}/${p.total_steps}`,
    );
  }

  // --- The API, with the key from the session -----------------------------------------------

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  const session = {
    key: () => sessionStorage.getItem(KEY),
    save: (key) => sessionStorage.setItem(KEY, key),
    clear: () => sessionStorage.removeItem(KEY),
  };

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error) return new ApiError(response.status, body.error.message, body.error.code);
    } catch (_) {
      // not JSON: fall through
    }
    return new ApiError(response.status, `${response.status} ${response.statusText}`, null);
  }

  async function request(path, { method = "GET", key = session.key(), as = "json" } = {}) {
    const response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${key}`, Accept: as === "json" ? "application/json" : "*/*" },
      cache: "no-store",
      credentials: "omit",
    });
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401 && key === session.key()) signOut(error.message);
      throw error;
    }
    return as === "json" ? response.json() : response;
  }

  // --- Sign in and out ------------------------------------------------------------------------

  function keyPrefix(key) {
    // A key is et_<8 hex>_<secret>: the prefix is public (README, "Authentication").
    const parts = key.split("_");
    return parts.length >= 3 ? `${parts[0]}_${parts[1]}` : "";
  }

  function showSignedIn(signedIn) {
    show($("signin"), !signedIn);
    for (const node of document.querySelectorAll("[data-signed-in]")) show(node, signedIn);
    if (signedIn) $("key-prefix").textContent = keyPrefix(session.key() || "");
  }

  let stopPage = () => {};

  function signOut(message) {
    session.clear();
    stopPage();
    showSignedIn(false);
    const error = $("signin-error");
    error.textContent = message || "";
    show(error, Boolean(message));
    $("api-key").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("api-key");
    const key = input.value.trim();
    const error = $("signin-error");
    show(error, false);
    if (!key) return;
    try {
      await request("/jobs?limit=1", { key }); // 401 with the API's message if it is not valid
    } catch (e) {
      error.textContent = e.message;
      show(error, true);
      return;
    }
    input.value = "";
    session.save(key);
    startPage();
  }

  function pageError(error) {
    const node = $("page-error");
    node.textContent = error ? error.message : "";
    show(node, Boolean(error));
  }

  // A loop that calls `tick` now and then every POLL_MS while it returns true.
  function poller(tick) {
    let timer = null;
    let stopped = false;
    const run = async () => {
      let again = false;
      try {
        again = await tick();
        pageError(null);
      } catch (e) {
        if (e.status === 401) return; // signed out, with the API's message
        pageError(e);
        again = e.status !== 404 && e.status !== 422; // try again unless it cannot get better
      }
      if (again && !stopped) timer = setTimeout(run, POLL_MS);
    };
    run();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  // --- Jobs -----------------------------------------------------------------------------------

  function jobRow(job) {
    const title = job.name || job.id;
    return el(
      "tr",
      { dataset: { jobId: job.id, status: job.status } },
      el("td", {}, el("a", { href: `/ui/jobs/${encodeURIComponent(job.id)}` }, title),
        job.name ? el("div", { className: "mono muted small" }, job.id) : null),
      el("td", {}, statusBadge(job.status)),
      el("td", {}, jobPhase(job)),
      el("td", {}, progressCell(job)),
      el("td", {}, fmtDate(job.created_at)),
      el("td", {}, fmtDuration(jobDuration(job))),
    );
  }

  function jobsPage() {
    const filter = $("status-filter");
    const params = new URLSearchParams(location.search);
    filter.value = STATUSES.includes(params.get("status")) ? params.get("status") : "";
    let extraPages = false;
    let cursor = null;

    const url = (after) => {
      const q = new URLSearchParams({ limit: "50" });
      if (filter.value) q.set("status", filter.value);
      if (after) q.set("cursor", after);
      return `/jobs?${q}`;
    };
    const render = (page, append) => {
      const body = $("jobs-body");
      if (!append) body.replaceChildren();
      body.append(...page.data.map(jobRow));
      cursor = page.next_cursor;
      show($("jobs-more"), page.has_more);
      show($("jobs-empty"), body.children.length === 0);
      return page.data.some((job) => !TERMINAL.has(job.status));
    };

    let stop = () => {};
    const restart = () => {
      stop();
      extraPages = false;
      // Refresh the first page while any job on it is still moving.
      stop = poller(async () => !extraPages && render(await request(url(null)), false));
    };
    filter.onchange = () => {
      const q = filter.value ? `?status=${filter.value}` : "";
      history.replaceState(null, "", `/ui${q}`);
      restart();
    };
    $("jobs-more").onclick = async () => {
      extraPages = true;
      try {
        render(await request(url(cursor)), true);
      } catch (e) {
        pageError(e);
      }
    };
    restart();
    return () => stop();
  }

  // --- One job --------------------------------------------------------------------------------

  function chart(container, empty, series, points) {
    // points: [[x...], [y1...], ...]; one uPlot per container, made once, then fed new data.
    container.dataset.points = String(points[0].length);
    show(empty, points[0].length === 0);
    if (!points[0].length || typeof uPlot === "undefined") return;
    if (!container.plot) {
      const width = Math.max(container.clientWidth, 280);
      container.plot = new uPlot(
        {
          width,
          height: 240,
          scales: { x: { time: false } },
          axes: [{ label: "step" }, {}],
          series: [{ label: "step" }, ...series],
        },
        points,
        container,
      );
      new ResizeObserver(() => {
        container.plot.setSize({ width: Math.max(container.clientWidth, 280), height: 240 });
      }).observe(container);
    } else {
      container.plot.setData(points);
    }
  }

  function renderCharts(metrics) {
    const train = metrics.train.filter((p) => p.loss !== null);
    chart($("loss-chart"), $("loss-empty"), [{ label: "loss", stroke: "#c2410c", width: 2 }], [
      train.map((p) => p.step),
      train.map((p) => p.loss),
    ]);
    const evals = metrics.eval;
    chart(
      $("eval-chart"),
      $("eval-empty"),
      [
        { label: "cosine accuracy", stroke: "#1d4ed8", width: 2, points: { show: true } },
        { label: "max accuracy", stroke: "#059669", width: 1, dash: [4, 4] },
      ],
      [evals.map((p) => p.step), evals.map((p) => p.cosine_accuracy), evals.map((p) => p.max_accuracy)],
    );
  }

  function renderFinal(final) {
    const box = $("final-metrics");
    if (!final) return;
    const rows = METRICS.filter(([name]) => final.base[name] !== null || final.fine_tuned[name] !== null);
    box.replaceChildren(
      el(
        "table",
        { className: "table compact", id: "final-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Metric"), el("th", {}, "Base"),
          el("th", {}, "Fine-tuned"), el("th", {}, "Difference"))),
        el("tbody", {}, rows.map(([name, label]) => {
          const diff = final.difference[name];
          const cls = diff > 0 ? "up" : diff < 0 ? "down" : "";
          return el("tr", {}, el("td", {}, label), el("td", {}, fmtNum(final.base[name])),
            el("td", {}, fmtNum(final.fine_tuned[name])),
            el("td", { className: `diff ${cls}` }, fmtDiff(diff)));
        })),
      ),
      final.evaluated_on ? el("p", { className: "muted" }, `Evaluated on the ${final.evaluated_on} data.`) : null,
    );
  }

  function findingsList(findings) {
    if (!findings.length) return el("p", { className: "ok" }, "No findings.");
    return el("ul", { className: "findings" }, findings.map((f) =>
      el("li", {}, el("span", { className: `badge sev-${f.severity}` }, f.severity), " ",
        el("strong", { className: "mono" }, f.code), ` (${f.count} rows) `, f.message,
        f.examples && f.examples.length
          ? el("details", {}, el("summary", {}, `${f.examples.length} example(s)`),
            el("pre", {}, f.examples.map((x) => JSON.stringify(x)).join("\n")))
          : null)));
  }

  function renderPreflight(preflight) {
    const box = $("preflight");
    if (!preflight) {
      box.replaceChildren(el("p", { className: "muted" }, "No preflight report for this job."));
      return;
    }
    const facts = el("dl", { className: "facts" },
      el("dt", {}, "Steps"), el("dd", {}, preflight.steps ?? "–"),
      el("dt", {}, "Train rows"), el("dd", {}, preflight.train_rows ?? "–"),
      el("dt", {}, "Held-out rows"), el("dd", {}, preflight.holdout_rows ?? "–"));
    let tokens = null;
    if (preflight.tokens) {
      const t = preflight.tokens;
      tokens = el("table", { className: "table compact" },
        el("caption", {}, `Token lengths (max_seq_length ${t.max_seq_length ?? "?"})`),
        el("thead", {}, el("tr", {}, ["Data", "p50", "p90", "p99", "max", "truncated"].map((h) => el("th", {}, h)))),
        el("tbody", {}, Object.entries(t.roles).map(([role, r]) => el("tr", {},
          el("td", {}, role), el("td", {}, r.p50 ?? ""), el("td", {}, r.p90 ?? ""),
          el("td", {}, r.p99 ?? ""), el("td", {}, r.max ?? ""), el("td", {}, r.truncated ?? "")))));
    }
    const skipped = (preflight.skipped || []).map((s) =>
      el("p", { className: "muted small" }, `Not checked: ${s.field}: ${s.reason}`));
    box.replaceChildren(facts, tokens || "", findingsList(preflight.findings), ...skipped);
  }

  // One line per event: its scalar fields, and an evaluation's loss and cosine accuracy.
  function eventSummary(e) {
    const parts = [];
    for (const [name, value] of Object.entries(e.data || {})) {
      if (value === null || value === undefined) continue;
      if (name === "metrics" && typeof value === "object") {
        if (value.loss !== undefined && value.loss !== null) parts.push(`loss ${fmtNum(value.loss)}`);
        if (value.cosine_accuracy !== undefined && value.cosine_accuracy !== null) {
          parts.push(`cosine accuracy ${fmtNum(value.cosine_accuracy)}`);
        }
      } else if (typeof value !== "object") {
        parts.push(`${name.replaceAll("_", " ")} ${value}`);
      }
    }
    return parts.join(", ");
  }

  function renderEvents(events) {
    $("events").replaceChildren(...events.map((e) => el("li", { dataset: { type: e.type } },
      el("span", { className: "when" }, fmtDate(e.at)), " ",
      el("span", { className: `badge ev-${e.type}` }, e.type), " ",
      el("span", { className: "small" }, eventSummary(e)))));
  }

  function datasetRef(ref) {
    if (!ref) return "–";
    if (typeof ref === "string") return el("a", { href: "/ui/datasets", className: "mono" }, ref);
    return `${ref.hub}${ref.config ? ` (${ref.config})` : ""} ${ref.split || ""}`;
  }

  // Where a succeeded job's time went (seconds per phase), or a dash before it has timings.
  function timingsText(t) {
    if (!t) return "–";
    const parts = [
      ["queued", t.queued_s], ["loading", t.loading_s], ["evaluating base", t.evaluating_base_s],
      ["training", t.training_s], ["evaluating", t.evaluating_s], ["saving", t.saving_s],
    ];
    return parts.map(([name, s]) => `${name} ${s.toFixed(1)} s`).join(", ");
  }

  function renderJob(job) {
    document.title = `${job.name || job.id} - Embedtune`;
    $("job-title").textContent = job.name || job.id;
    const status = $("job-status");
    status.textContent = job.status;
    status.className = `badge status-${job.status}`;
    const running = !TERMINAL.has(job.status);
    show($("cancel-job"), running && !job.cancel_requested_at);
    show($("download-model"), job.status === "succeeded" && Boolean(job.model));
    const p = job.progress;
    const bar = $("job-progress");
    show(bar, Boolean(p));
    if (p) {
      bar.max = p.total_steps || 1;
      bar.value = p.step;
    }
    $("job-facts").replaceChildren(
      el("dt", {}, "Phase"), el("dd", { id: "job-phase" }, jobPhase(job)),
      el("dt", {}, "Progress"), el("dd", { id: "job-step" }, p ? `step ${p.step} of ${p.total_steps}, epoch ${p.epoch.toFixed(2)}` : "–"),
      el("dt", {}, "Latest loss"), el("dd", {}, p && p.loss !== null ? fmtNum(p.loss) : "–"),
      el("dt", {}, "Created"), el("dd", {}, fmtDate(job.created_at)),
      el("dt", {}, "Duration"), el("dd", {}, fmtDuration(jobDuration(job)) || "–"),
      el("dt", {}, "Attempt"), el("dd", {}, job.attempt),
      el("dt", {}, "Training left"), el("dd", { id: "job-eta" },
        running && p && p.eta_s !== null && p.eta_s !== undefined ? fmtDuration(p.eta_s * 1000) || "–" : "–"),
      el("dt", {}, "Time spent"), el("dd", { id: "job-timings" }, timingsText(job.timings)),
      el("dt", {}, "Throughput"), el("dd", { id: "job-throughput" },
        job.throughput ? `${job.throughput.toFixed(1)} training samples/s` : "–"),
    );
    const error = $("job-error");
    show(error, Boolean(job.error));
    if (job.error) error.textContent = `${job.error.code}: ${job.error.message}`;
    const hp = Object.entries(job.hyperparameters).map(([k, v]) => `${k}=${v}`).join(", ");
    $("job-details").replaceChildren(
      el("dt", {}, "Job id"), el("dd", { className: "mono" }, job.id),
      el("dt", {}, "Base model"), el("dd", { className: "mono" }, job.base_model),
      el("dt", {}, "Training data"), el("dd", {}, datasetRef(job.train_dataset)),
      el("dt", {}, "Eval data"), el("dd", {}, datasetRef(job.eval_dataset)),
      el("dt", {}, "Test data"), el("dd", {}, datasetRef(job.test_dataset)),
      el("dt", {}, "Held out"), el("dd", {}, job.holdout ? `${job.holdout.rows} rows` : "–"),
      el("dt", {}, "Loss"), el("dd", {}, job.loss),
      el("dt", {}, "Hyperparameters"), el("dd", { className: "mono small" }, hp),
      el("dt", {}, "Model"), el("dd", { className: "mono small" },
        job.model ? `${fmtBytes(job.model.size_bytes)}, sha256 ${job.model.sha256}` : "–"),
    );
    renderPreflight(job.preflight);
  }

  async function allEvents(jobId, events, cursor) {
    // The timeline grows at its end: ask for what came after the last cursor we had.
    for (;;) {
      const q = new URLSearchParams({ limit: "500" });
      if (cursor) q.set("cursor", cursor);
      const page = await request(`/jobs/${jobId}/events?${q}`);
      events.push(...page.data);
      cursor = page.next_cursor || cursor;
      if (!page.has_more) return cursor;
    }
  }

  function jobPage() {
    const jobId = encodeURIComponent(document.body.dataset.jobId);
    const events = [];
    let cursor = null;
    let job = null;

    const stop = poller(async () => {
      const [j, metrics] = await Promise.all([
        request(`/jobs/${jobId}`),
        request(`/jobs/${jobId}/metrics`),
      ]);
      job = j;
      cursor = await allEvents(jobId, events, cursor);
      renderJob(job);
      renderCharts(metrics);
      renderFinal(metrics.final);
      renderEvents(events);
      return !TERMINAL.has(job.status);
    });

    $("cancel-job").onclick = async () => {
      if (!window.confirm("Cancel this job? A running job stops at its next step.")) return;
      try {
        renderJob(await request(`/jobs/${jobId}/cancel`, { method: "POST" }));
      } catch (e) {
        pageError(e);
      }
    };
    $("download-model").onclick = async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      button.textContent = "Downloading…";
      try {
        const response = await request(`/jobs/${jobId}/model`, { as: "response" });
        const blob = await response.blob();
        const disposition = response.headers.get("Content-Disposition") || "";
        const match = /filename="?([^";]+)"?/.exec(disposition);
        const link = el("a", {
          href: URL.createObjectURL(blob),
          download: match ? match[1] : `${job ? job.id : "model"}.tar.gz`,
        });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      } catch (e) {
        pageError(e);
      } finally {
        button.disabled = false;
        button.textContent = "Download model";
      }
    };
    return stop;
  }

  // --- Datasets -------------------------------------------------------------------------------

  function datasetsPage() {
    // A page at a time, like the jobs list: a team may have thousands of datasets.
    let cursor = null;
    const render = (page, append) => {
      const body = $("datasets-body");
      const reports = $("dataset-reports");
      if (!append) {
        body.replaceChildren();
        reports.replaceChildren();
      }
      body.append(...page.data.map((d) => {
        const findings = d.preflight ? d.preflight.findings.length : null;
        return el("tr", { dataset: { datasetId: d.id } },
          el("td", {}, d.name, el("div", { className: "mono muted small" }, d.id)),
          el("td", {}, d.kind), el("td", {}, d.rows), el("td", {}, d.format),
          el("td", {}, fmtBytes(d.size_bytes)), el("td", {}, fmtDate(d.created_at)),
          el("td", {}, findings === null ? "–" : el("a", { href: `#report-${d.id}` },
            findings ? `${findings} warning(s)` : "no findings")));
      }));
      reports.append(...page.data.filter((d) => d.preflight).map((d) =>
        el("section", { className: "card", id: `report-${d.id}` },
          el("h2", {}, `Preflight: ${d.name}`),
          el("p", { className: "muted small" },
            `${d.preflight.rows} rows checked for: ${d.preflight.checked.join(", ")}`),
          findingsList(d.preflight.findings))));
      cursor = page.next_cursor;
      show($("datasets-more"), page.has_more);
      show($("datasets-empty"), body.children.length === 0);
    };
    const url = (after) => {
      const q = new URLSearchParams({ limit: "50" });
      if (after) q.set("cursor", after);
      return `/datasets?${q}`;
    };
    $("datasets-more").onclick = async () => {
      try {
        render(await request(url(cursor)), true);
      } catch (e) {
        pageError(e);
      }
    };
    return poller(async () => {
      render(await request(url(null)), false);
      return false; // datasets do not change once uploaded: no polling
    });
  }

  // --- Start ----------------------------------------------------------------------------------

  const PAGES = { jobs: jobsPage, job: jobPage, datasets: datasetsPage };

  function startPage() {
    stopPage();
    showSignedIn(true);
    stopPage = PAGES[document.body.dataset.page]() || (() => {});
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => {
      session.clear();
      location.assign("/ui"); // a fresh shell: nothing of the team's data stays on the page
    });
    if (session.key()) startPage();
    else showSignedIn(false);
  });
})();
