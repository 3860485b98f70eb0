// FedML admin: live log panel and per-round metrics chart. No dependencies.
// Protocol: docs/streaming.md. The database is the record: the socket resumes by sequence number.
"use strict";

(function () {
  const MAX_LINES = 20000; // lines kept in the page; older ones can be loaded again on scroll

  function wsUrl(path, params) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams(params).toString();
    return `${scheme}//${window.location.host}${path}${query ? "?" + query : ""}`;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  class LogPanel {
    constructor(root) {
      this.root = root;
      this.wsPath = root.dataset.wsPath;
      this.historyUrl = root.dataset.historyUrl; // the primary log, for loading older lines
      this.primary = root.dataset.primary; // e.g. "run:<id>" or "session:<id>"
      this.cursors = {}; // follow name -> last seq received (resume point)
      this.received = 0;
      this.paused = false;
      this.pending = [];
      this.loadingOlder = false;
      this.oldestPrimary = null;
      this.build();
      this.connect();
    }

    build() {
      this.root.classList.add("fedml-panel");
      this.root.append(el("h2", {}, this.root.dataset.title || "Live log"));
      const bar = el("div", { class: "fedml-toolbar" });
      this.pauseButton = el("button", { type: "button", class: "button", "data-role": "pause" }, "Pause");
      this.search = el("input", { type: "search", placeholder: "Search loaded lines…", "data-role": "search" });
      this.status = el("span", { class: "fedml-status", "data-role": "status" }, "connecting…");
      bar.append(this.pauseButton, this.search, this.status);
      this.lines = el("pre", { class: "fedml-lines", "data-role": "lines" });
      this.root.append(bar, this.lines);
      this.pauseButton.addEventListener("click", () => this.togglePause());
      this.search.addEventListener("input", () => this.applyFilter());
      this.lines.addEventListener("scroll", () => {
        if (this.lines.scrollTop < 40) this.loadOlder();
      });
    }

    connect() {
      const params = {};
      Object.entries(this.cursors).forEach(([name, seq]) => {
        if (name === this.primary) params.after = seq;
        else if (name.startsWith("session:")) params["after." + name.slice(8)] = seq;
      });
      const ws = new WebSocket(wsUrl(this.wsPath, params));
      this.ws = ws;
      ws.onmessage = (event) => this.onMessage(JSON.parse(event.data));
      ws.onclose = (event) => {
        if (event.code === 1000) { this.setStatus("ended"); return; }
        if (event.code >= 4400 && event.code < 4500) { this.setStatus(`closed (${event.code})`); return; }
        this.setStatus("reconnecting…");
        setTimeout(() => this.connect(), 1000); // resumes after the last seq of each follow
      };
    }

    onMessage(msg) {
      if (msg.type === "hello") {
        this.received = 0;
        this.setStatus("live");
      } else if (msg.type === "lines") {
        this.received += msg.lines.length;
        this.ws.send(JSON.stringify({ type: "ack", received: this.received }));
        this.cursors[msg.follow] = msg.last_seq;
        const tagged = msg.follow !== this.primary;
        msg.lines.forEach((line) => this.pending.push({ line, follow: msg.follow, tagged }));
        if (msg.follow === this.primary && this.oldestPrimary === null && msg.lines.length) {
          this.oldestPrimary = msg.lines[0].seq;
        }
        if (!this.paused) this.flush();
      } else if (msg.type === "behind") {
        this.setStatus("catching up…");
      } else if (msg.type === "eof") {
        this.cursors[msg.follow] = msg.last_seq;
        if (msg.follow === this.primary) this.setStatus(`ended${msg.status ? " (" + msg.status + ")" : ""}`);
      }
    }

    render(item) {
      const { line, tagged } = item;
      const row = el("span", { class: `fedml-line ${line.stream}`, "data-seq": line.seq });
      if (tagged || line.source) {
        row.append(el("span", { class: "fedml-tag" }, line.source || ""));
      }
      row.append(document.createTextNode(line.text + "\n"));
      row.dataset.text = line.text.toLowerCase();
      this.matchOne(row);
      return row;
    }

    flush() {
      if (!this.pending.length) return;
      const atBottom = this.lines.scrollHeight - this.lines.scrollTop - this.lines.clientHeight < 30;
      const fragment = document.createDocumentFragment();
      this.pending.forEach((item) => fragment.append(this.render(item)));
      this.pending = [];
      this.lines.append(fragment);
      while (this.lines.childElementCount > MAX_LINES) this.lines.firstElementChild.remove();
      if (atBottom) this.lines.scrollTop = this.lines.scrollHeight; // follow the tail
    }

    togglePause() {
      this.paused = !this.paused;
      this.pauseButton.textContent = this.paused ? "Resume" : "Pause";
      this.setStatus(this.paused ? "paused (still receiving)" : "live");
      if (!this.paused) this.flush();
    }

    matchOne(row) {
      const needle = this.search.value.trim().toLowerCase();
      row.classList.toggle("hidden", Boolean(needle) && !row.dataset.text.includes(needle));
    }

    applyFilter() {
      Array.from(this.lines.children).forEach((row) => this.matchOne(row));
    }

    async loadOlder() {
      if (this.loadingOlder || !this.historyUrl || this.oldestPrimary === null || this.oldestPrimary <= 1) return;
      this.loadingOlder = true;
      try {
        const response = await fetch(`${this.historyUrl}?before=${this.oldestPrimary}&limit=500`, { credentials: "same-origin" });
        const body = await response.json();
        if (body.lines && body.lines.length) {
          const before = this.lines.scrollHeight;
          const fragment = document.createDocumentFragment();
          body.lines.forEach((line) => fragment.append(this.render({ line, tagged: false })));
          this.lines.prepend(fragment);
          this.oldestPrimary = body.lines[0].seq;
          this.lines.scrollTop += this.lines.scrollHeight - before; // keep the reader's place
        } else {
          this.oldestPrimary = 1;
        }
      } finally {
        this.loadingOlder = false;
      }
    }

    setStatus(text) {
      this.status.textContent = text;
      this.root.dataset.state = text;
    }
  }

  class MetricsChart {
    constructor(root) {
      this.root = root;
      this.runId = root.dataset.runId;
      this.points = new Map(); // round -> {metric: value}
      this.root.classList.add("fedml-panel", "fedml-chart");
      this.root.append(el("h2", {}, "Per-round metrics (evaluate)"));
      this.svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      this.svg.setAttribute("viewBox", "0 0 600 240");
      this.svg.setAttribute("data-role", "chart");
      this.table = el("table", { "data-role": "rounds" });
      this.root.append(this.svg, this.table);
      this.load().then(() => this.follow());
    }

    async load() {
      const response = await fetch(this.root.dataset.roundsUrl, { credentials: "same-origin" });
      const run = await response.json();
      this.numRounds = (run.metrics && run.metrics.num_rounds) || (run.config && run.config.num_rounds) || 0;
      (run.rounds || []).filter((r) => r.phase === "evaluate").forEach((r) => this.points.set(r.round, r.aggregated));
      this.draw();
    }

    follow() {
      const ws = new WebSocket(wsUrl(`/ws/projects/${this.root.dataset.projectId}/events/`, {}));
      let received = 0;
      ws.onmessage = (event) => {
        const msg = JSON.parse(event.data);
        if (msg.type !== "events") return;
        received += msg.events.length;
        ws.send(JSON.stringify({ type: "ack", received }));
        msg.events.forEach((e) => {
          if (e.type === "run.round" && e.payload.run_id === this.runId && e.payload.phase === "evaluate") {
            this.numRounds = e.payload.num_rounds || this.numRounds;
            this.points.set(e.payload.round, e.payload.aggregated);
            this.draw();
          }
        });
      };
      ws.onclose = (event) => {
        if (event.code < 4400) setTimeout(() => this.follow(), 2000);
      };
    }

    metricName() {
      const first = this.points.values().next().value || {};
      return ["accuracy", "eval_acc"].find((k) => k in first) || Object.keys(first)[0];
    }

    draw() {
      const name = this.metricName();
      const rounds = Array.from(this.points.keys()).sort((a, b) => a - b);
      const maxRound = Math.max(this.numRounds || 0, rounds.length ? rounds[rounds.length - 1] : 1, 1);
      const values = rounds.map((r) => Number(this.points.get(r)[name]));
      const lo = Math.min(0, ...values), hi = Math.max(1, ...values);
      const x = (r) => 40 + ((r - 1) / Math.max(maxRound - 1, 1)) * 540;
      const y = (v) => 210 - ((v - lo) / (hi - lo || 1)) * 190;
      const ns = "http://www.w3.org/2000/svg";
      this.svg.replaceChildren();
      const axis = document.createElementNS(ns, "path");
      axis.setAttribute("d", "M40 20 V210 H580");
      axis.setAttribute("stroke", "#999");
      axis.setAttribute("fill", "none");
      this.svg.append(axis);
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", "44");
      label.setAttribute("y", "16");
      label.setAttribute("font-size", "12");
      label.textContent = `${name || "metric"} by round (${rounds.length}/${maxRound || "?"})`;
      this.svg.append(label);
      if (rounds.length) {
        const line = document.createElementNS(ns, "polyline");
        line.setAttribute("points", rounds.map((r, i) => `${x(r)},${y(values[i])}`).join(" "));
        line.setAttribute("fill", "none");
        line.setAttribute("stroke", "#417690");
        line.setAttribute("stroke-width", "2");
        this.svg.append(line);
      }
      rounds.forEach((r, i) => {
        const dot = document.createElementNS(ns, "circle");
        dot.setAttribute("cx", x(r));
        dot.setAttribute("cy", y(values[i]));
        dot.setAttribute("r", "4");
        dot.setAttribute("fill", "#417690");
        dot.setAttribute("data-round", r);
        const title = document.createElementNS(ns, "title");
        title.textContent = `round ${r}: ${values[i].toFixed(4)}`;
        dot.append(title);
        this.svg.append(dot);
      });
      this.table.replaceChildren(el("tr", {}, ""));
      this.table.firstChild.append(el("th", {}, "round"), el("th", {}, name || "metric"));
      rounds.forEach((r, i) => {
        const row = el("tr", { "data-round": r });
        row.append(el("td", {}, String(r)), el("td", {}, values[i].toFixed(4)));
        this.table.append(row);
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-fedml-logpanel]").forEach((root) => new LogPanel(root));
    document.querySelectorAll("[data-fedml-metrics]").forEach((root) => new MetricsChart(root));
  });
})();
