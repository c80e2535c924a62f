// jetsaga's dashboard: no framework, no build step. The overview follows
// GET /dashboard/events (Server-Sent Events: "hello" with the history, then
// a "tick" a second); a saga's page (#/orders/<id>) reads GET /orders/{id}
// and follows GET /orders/{id}/watch until the saga ends.
'use strict';

(function () {
  const $ = (sel) => document.querySelector(sel);
  // Changes only when the page is loaded anew: the browser test checks that
  // the figures move without a reload.
  window.jetsagaPageLoad = Date.now() + '-' + Math.random().toString(36).slice(2);

  const WINDOW_MS = 300 * 1000; // what the charts span
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue('--' + name).trim();
  const OUTCOME_COLORS = {
    confirmed: color('green'), out_of_stock: color('amber'), unknown_sku: color('violet'),
    payment_failed: color('red'), timeout: color('orange'), other: color('grey'),
  };
  const SERVICE_COLORS = { order: color('order'), inventory: color('inventory'), payment: color('payment'), readmodel: color('readmodel') };
  const serviceOf = (eventType) => (eventType || '').split('.')[0];
  const serviceColor = (name) => SERVICE_COLORS[name] || color('other');

  const state = { outcomes: Object.keys(OUTCOME_COLORS), tickMs: 1000, history: [], snap: null };

  // ---- formatting ----
  const nf = new Intl.NumberFormat('en-US');
  function fmtInt(n) { return n == null ? '–' : nf.format(n); }
  function fmtRate(r) { return r == null ? '–' : (r >= 100 ? nf.format(Math.round(r)) : r.toFixed(1)); }
  function fmtMs(ms) {
    if (ms == null || isNaN(ms)) return '–';
    if (ms === 0) return '0 ms';
    if (ms < 1) return ms.toFixed(2) + ' ms';
    if (ms < 10) return ms.toFixed(1) + ' ms';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    return (ms / 60000).toFixed(1) + ' min';
  }
  function fmtAgo(t) {
    const s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 1) return 'now';
    if (s < 60) return Math.floor(s) + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    return Math.floor(s / 3600) + 'h ago';
  }
  function fmtCents(c) { return c == null ? '–' : '$' + (c / 100).toFixed(2); }
  function shortID(id) { return id.length > 20 ? id.slice(0, 8) + '…' + id.slice(-6) : id; }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'style') e.style.cssText = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function setText(sel, text) { const e = $(sel); if (e.textContent !== String(text)) e.textContent = text; }

  // ---- charts on <canvas> ----
  // Each chart spans the last WINDOW_MS up to the newest point. It sets
  // data-points and data-sum on its canvas (what the browser test reads).
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  function prepare(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }
  // frame draws the grid and axes and returns the plot's mapping.
  function frame(canvas, maxY, tEnd, unit) {
    const { ctx, w, h } = prepare(canvas);
    const left = 46, right = 8, top = 6, bottom = 20;
    const pw = w - left - right, ph = h - top - bottom;
    const x = (t) => left + (1 - (tEnd - t) / WINDOW_MS) * pw;
    const y = (v) => top + ph - (v / maxY) * ph;
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = color('dim'); ctx.strokeStyle = color('grid'); ctx.lineWidth = 1;
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = (maxY * i) / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
      ctx.fillText(unit === 'ms' ? fmtMs(v).replace(' ', '') : fmtRate(v), left - 6, yy);
    }
    ctx.textAlign = 'center'; ctx.textBaseline = 'top';
    for (let m = 5; m >= 0; m--) {
      const xx = x(tEnd - m * 60000);
      ctx.fillText(m === 0 ? 'now' : '-' + m + 'm', Math.min(Math.max(xx, left + 10), left + pw - 10), top + ph + 5);
    }
    ctx.save(); ctx.beginPath(); ctx.rect(left, top, pw, ph); ctx.clip();
    return { ctx, x, y, left, top, pw, ph };
  }
  function visible(points, tEnd) { return points.filter((p) => p.t > tEnd - WINDOW_MS); }

  function lineChart(canvas, points, series, unit) {
    const tEnd = points.length ? points[points.length - 1].t : Date.now();
    const pts = visible(points, tEnd);
    let max = 0, sum = 0;
    for (const s of series) for (const p of pts) { const v = s.value(p); max = Math.max(max, v); sum += v; }
    const f = frame(canvas, niceMax(max * 1.1), tEnd, unit);
    for (const s of series) {
      if (!pts.length) continue;
      const { ctx } = f;
      ctx.beginPath();
      pts.forEach((p, i) => { const xx = f.x(p.t), yy = f.y(s.value(p)); i ? ctx.lineTo(xx, yy) : ctx.moveTo(xx, yy); });
      ctx.strokeStyle = s.color; ctx.lineWidth = 1.8; ctx.lineJoin = 'round';
      ctx.setLineDash(s.dash || []); ctx.stroke(); ctx.setLineDash([]);
      if (s.fill) {
        ctx.lineTo(f.x(pts[pts.length - 1].t), f.y(0)); ctx.lineTo(f.x(pts[0].t), f.y(0)); ctx.closePath();
        const g = ctx.createLinearGradient(0, f.top, 0, f.top + f.ph);
        g.addColorStop(0, s.color + '55'); g.addColorStop(1, s.color + '05');
        ctx.fillStyle = g; ctx.fill();
      }
    }
    f.ctx.restore();
    canvas.dataset.points = pts.length; canvas.dataset.sum = Math.round(sum * 10) / 10;
  }

  function stackedBars(canvas, points, names) {
    const tEnd = points.length ? points[points.length - 1].t : Date.now();
    const pts = visible(points, tEnd);
    let max = 0, sum = 0;
    for (const p of pts) { const tot = p.outcomes.reduce((a, b) => a + b, 0); max = Math.max(max, tot); sum += tot; }
    const f = frame(canvas, niceMax(max * 1.1), tEnd, 'rate');
    const bw = Math.max(1, f.pw / (WINDOW_MS / state.tickMs) - 0.6);
    for (const p of pts) {
      let acc = 0;
      const xx = f.x(p.t) - bw;
      names.forEach((name, i) => {
        const v = p.outcomes[i] || 0;
        if (!v) return;
        f.ctx.fillStyle = OUTCOME_COLORS[name] || color('grey');
        const y0 = f.y(acc), y1 = f.y(acc + v);
        f.ctx.fillRect(xx, y1, bw, y0 - y1);
        acc += v;
      });
    }
    f.ctx.restore();
    canvas.dataset.points = pts.length; canvas.dataset.sum = Math.round(sum * 10) / 10;
  }

  function legend(sel, items) {
    const box = $(sel);
    box.replaceChildren(...items.map((it) => el('span', { 'data-name': it.name },
      el('i', { style: 'background:' + it.color }), it.label, it.value != null ? el('b', {}, it.value) : null)));
  }

  // ---- the overview ----
  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; drawOverview(); });
  }

  function drawOverview() {
    if ($('#overview').hidden) return;
    const h = state.history, s = state.snap, last = h.length ? h[h.length - 1] : null;
    const avg = (f, n) => { const xs = h.slice(-n); return xs.length ? xs.reduce((a, p) => a + f(p), 0) / xs.length : null; };
    lineChart($('#chart-throughput'), h, [
      { color: color('blue'), value: (p) => p.placed, fill: true },
      { color: color('green'), value: (p) => p.completed, dash: [5, 3] },
    ], 'rate');
    legend('#legend-throughput', [
      { name: 'placed', color: color('blue'), label: 'placed', value: last ? fmtRate(last.placed) + '/s' : null },
      { name: 'completed', color: color('green'), label: 'completed', value: last ? fmtRate(last.completed) + '/s' : null },
      { name: 'avg', color: 'transparent', label: '1-min average placed', value: fmtRate(avg((p) => p.placed, 60)) + '/s' },
    ]);
    stackedBars($('#chart-outcomes'), h, state.outcomes);
    const totals = s ? s.totals.outcomes : {};
    const ended = s ? s.totals.completed : 0;
    legend('#legend-outcomes', state.outcomes.filter((o) => o === 'confirmed' || totals[o]).map((o) => ({
      name: o, color: OUTCOME_COLORS[o], label: o.replace(/_/g, ' '), value: fmtInt(totals[o] || 0),
    })));
    $('#mix').replaceChildren(...state.outcomes.filter((o) => totals[o]).map((o) =>
      el('div', { style: `width:${(100 * totals[o]) / ended}%;background:${OUTCOME_COLORS[o]}`, title: `${o}: ${totals[o]}` })));
    lineChart($('#chart-latency'), h, [
      { color: color('green'), value: (p) => p.latency_ms.p50 },
      { color: color('amber'), value: (p) => p.latency_ms.p99 },
      { color: color('violet'), value: (p) => p.lag_ms.p99 },
    ], 'ms');
    legend('#legend-latency', [
      { name: 'saga-p50', color: color('green'), label: 'saga p50', value: s ? fmtMs(s.latency_ms.p50) : null },
      { name: 'saga-p99', color: color('amber'), label: 'saga p99', value: s ? fmtMs(s.latency_ms.p99) : null },
      { name: 'lag-p99', color: color('violet'), label: 'read-model lag p99', value: s ? fmtMs(s.lag_ms.p99) : null },
    ]);
    if (!s) return;

    setText('#kpi-placed-rate', fmtRate(avg((p) => p.placed, 5)));
    setText('#kpi-completed-rate', fmtRate(avg((p) => p.completed, 5)));
    setText('#kpi-placed-total', fmtInt(s.totals.placed));
    setText('#kpi-completed-total', fmtInt(s.totals.completed));
    pair('#kpi-latency', s.latency_ms);
    setText('#kpi-latency-n', fmtInt(s.latency_ms.samples));
    pair('#kpi-lag', s.lag_ms);
    setText('#kpi-lag-n', fmtInt(s.lag_ms.samples));
    setText('#kpi-confirmed-share', ended ? Math.round((100 * (totals.confirmed || 0)) / ended) + '%' : '–');
    if (s.sagas) {
      setText('#kpi-inflight', fmtInt(s.sagas.in_flight));
      if (s.sagas.stuck != null) {
        setText('#kpi-stuck', fmtInt(s.sagas.stuck));
        setText('#kpi-stuck-note', 'in flight past ' + (s.sagas.stuck_after || 'the threshold'));
      }
    }
    if (s.dead_letters != null) {
      setText('#kpi-dlq', fmtInt(s.dead_letters));
      $('#kpi-dlq').style.color = s.dead_letters ? color('red') : '';
    }
    drawConsumers(s);
    drawLatest(s.latest || []);
    setText('#uptime', 'read model up ' + fmtAgo(Date.parse(s.started_at)).replace(' ago', '').replace('now', '0s'));
  }

  // pair shows a p50 and a p99: "69 ms / 366 ms", the second smaller.
  function pair(sel, q) {
    const e = $(sel);
    if (!q.samples) { setText(sel, '–'); return; }
    const text = fmtMs(q.p50) + ' / ' + fmtMs(q.p99);
    if (e.dataset.text === text) return;
    e.dataset.text = text;
    e.replaceChildren(fmtMs(q.p50), el('em', {}, ' / ' + fmtMs(q.p99)));
  }

  function drawConsumers(s) {
    if (!s.consumers) return;
    // The bars' scale: 100 messages at least, so a message or two in
    // flight does not look like a backlog.
    const max = Math.max(100, ...s.consumers.map((c) => c.pending + c.ack_pending));
    const rows = s.consumers.map((c) => {
      const svc = c.name.split('-')[0];
      return el('tr', { 'data-consumer': c.name },
        el('td', {}, el('span', { class: 'svcdot', style: 'background:' + serviceColor(svc) }), c.name),
        el('td', { class: 'muted' }, c.stream),
        el('td', { class: 'num' }, fmtInt(c.pending)),
        el('td', { class: 'num' }, fmtInt(c.ack_pending)),
        el('td', { class: 'bar' }, el('div', { class: 'meter' },
          el('div', { style: `width:${(100 * (c.pending + c.ack_pending)) / max}%` }))));
    });
    if (s.dead_letters != null) {
      rows.push(el('tr', { class: 'dlq' },
        el('td', {}, el('span', { class: 'svcdot', style: 'background:' + color('red') }), 'dead letters'),
        el('td', { class: 'muted' }, 'DLQ'),
        el('td', { class: 'num', id: 'dlq-count' }, fmtInt(s.dead_letters)),
        el('td', { class: 'num muted' }, ''), el('td', { class: 'muted' }, 'bin/jetsaga dlq ls')));
    }
    $('#consumers').replaceChildren(...rows);
  }

  function drawLatest(latest) {
    if (!latest.length) return;
    $('#latest').replaceChildren(...latest.map((l) => {
      const created = Date.parse(l.created_at), updated = Date.parse(l.updated_at);
      const terminal = l.status === 'CONFIRMED' || l.status === 'CANCELLED';
      const tr = el('tr', { 'data-order-id': l.order_id },
        el('td', {}, el('a', { href: '#/orders/' + l.order_id, title: l.order_id }, shortID(l.order_id))),
        el('td', {}, el('span', { class: 'chip ' + l.status }, l.status), l.reason ? el('span', { class: 'reason' }, l.reason.replace(/_/g, ' ')) : null),
        el('td', { class: 'num' }, String(l.events)),
        el('td', { class: 'num' }, fmtCents(l.total_cents)),
        el('td', { class: 'num muted' }, fmtAgo(created)),
        el('td', { class: 'num' }, terminal ? fmtMs(updated - created) : '…'));
      tr.addEventListener('click', (ev) => { if (ev.target.tagName !== 'A') location.hash = '#/orders/' + l.order_id; });
      return tr;
    }));
  }

  function connect() {
    const live = $('#live');
    const es = new EventSource('/dashboard/events');
    const setLive = (st, text) => { live.dataset.state = st; setText('#live-text', text); };
    es.onopen = () => setLive('open', 'live');
    es.onerror = () => setLive(es.readyState === EventSource.CLOSED ? 'closed' : 'connecting', es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting');
    es.addEventListener('hello', (ev) => {
      const h = JSON.parse(ev.data);
      state.outcomes = h.outcomes; state.tickMs = h.tick_ms || 1000; state.history = h.history || [];
      if (h.snapshot) state.snap = h.snapshot;
      setLive('open', 'live');
      scheduleDraw();
    });
    es.addEventListener('tick', (ev) => {
      const snap = JSON.parse(ev.data);
      state.snap = snap;
      state.history.push(snap.point);
      if (state.history.length > 400) state.history.splice(0, state.history.length - 400);
      live.dataset.tick = snap.point.t;
      scheduleDraw();
    });
  }

  // ---- one saga ----
  let watch = null; // the open /orders/{id}/watch EventSource
  let shownSteps = null; // the event ids on the page; null before the first render

  function closeWatch() { if (watch) { watch.close(); watch = null; } }

  async function showSaga(id) {
    closeWatch();
    shownSteps = null;
    $('#overview').hidden = true; $('#saga').hidden = false;
    $('#saga-id').textContent = id;
    $('#saga-status').className = 'chip'; $('#saga-status').textContent = '';
    $('#saga-facts').replaceChildren(); $('#saga-timeline').replaceChildren(); $('#saga-axis').replaceChildren();
    $('#saga-msg').textContent = 'loading…';
    $('#search-id').value = id;
    const watchState = $('#saga-watch');
    const setWatch = (st, text) => { watchState.dataset.state = st; watchState.hidden = st === 'idle'; watchState.lastChild.textContent = text; };
    setWatch('idle', '');
    let view = null;
    try {
      const r = await fetch('/orders/' + encodeURIComponent(id));
      if (r.ok) view = await r.json();
      else if (r.status !== 404) throw new Error((await r.json()).error || r.statusText);
    } catch (err) {
      $('#saga-msg').textContent = 'could not read the order: ' + err.message;
      return;
    }
    if (view) renderSaga(view);
    else $('#saga-msg').textContent = 'not in the read model yet; waiting for it…';
    if (view && terminal(view)) return;
    if (currentSaga() !== id) return;
    setWatch('watching', 'live');
    const es = new EventSource('/orders/' + encodeURIComponent(id) + '/watch');
    watch = es;
    es.addEventListener('order', (ev) => {
      const v = JSON.parse(ev.data);
      renderSaga(v);
      if (terminal(v)) { es.close(); if (watch === es) watch = null; setWatch('done', 'ended'); }
    });
    es.onerror = () => {
      // The stream ends after a terminal view, or answers 404 for an order
      // it never saw: stop rather than reconnect.
      if (!$('#saga-timeline').children.length) $('#saga-msg').textContent = 'order ' + id + ' not found';
      es.close(); if (watch === es) watch = null;
      setWatch('done', 'stream ended');
    };
  }

  function terminal(v) { return v.status === 'CONFIRMED' || v.status === 'CANCELLED'; }

  function renderSaga(v) {
    const steps = v.timeline || [];
    $('#saga-msg').textContent = '';
    const st = $('#saga-status');
    st.className = 'chip ' + v.status; st.textContent = v.status + (v.reason ? ' · ' + v.reason.replace(/_/g, ' ') : '');
    const t = (s) => Date.parse(s);
    const created = steps.find((s) => s.event_type === 'order.created');
    const t0 = created ? t(created.occurred_at) : Math.min(...steps.map((s) => t(s.occurred_at)));
    const lastOcc = Math.max(...steps.map((s) => t(s.occurred_at)));
    const tEnd = Math.max(...steps.map((s) => t(s.projected_at)), lastOcc);
    const span = Math.max(1, tEnd - t0);
    const items = (v.items || []).map((i) => `${i.qty}× ${i.sku}`).join(', ');
    const facts = [
      ['customer', v.customer_id || '–'], ['total', fmtCents(v.total_cents)], ['items', items || '–'],
      ['events', String(v.version)], [terminal(v) ? 'took' : 'running for', created ? fmtMs((terminal(v) ? lastOcc : Date.now()) - t0) : '–'],
      ['last lag', fmtMs(v.lag_ms)],
    ];
    $('#saga-facts').replaceChildren(...facts.map(([k, val]) => el('div', {}, el('dt', {}, k), el('dd', {}, val))));

    const byID = new Map(steps.map((s) => [s.event_id, s]));
    const pct = (ms) => (100 * (ms - t0)) / span;
    $('#saga-timeline').replaceChildren(...steps.map((s, i) => {
      const svc = serviceOf(s.event_type), c = serviceColor(svc);
      const occ = t(s.occurred_at), proj = t(s.projected_at);
      const cause = byID.get(s.causation_id);
      const from = cause ? t(cause.occurred_at) : occ;
      const hop = cause ? el('span', { class: 'hop' }, el('b', {}, fmtMs(occ - from)), ' after ', cause.event_type)
        : el('span', { class: 'hop' }, s.causation_id ? 'cause ' + shortID(s.causation_id) : 'saga starts');
      const row = el('div', {
        class: 'step' + (!shownSteps || shownSteps.has(s.event_id) ? '' : ' new'), 'data-event-id': s.event_id,
        'data-event-type': s.event_type, 'data-causation-id': s.causation_id || '', 'data-index': String(i),
      },
      el('div', { class: 'svc' }, el('span', { class: 'svcdot', style: 'background:' + c }), el('b', { style: 'color:' + c }, svc)),
      el('div', { class: 'etype', title: s.event_id }, s.event_type),
      el('div', { class: 'at', title: s.occurred_at }, '+' + fmtMs(occ - t0)),
      el('div', { class: 'hopcell' }, hop),
      el('div', { class: 'track', title: `occurred ${s.occurred_at}\nprojected ${s.projected_at} (lag ${fmtMs(s.lag_ms)})` },
        el('div', { class: 'lane' },
          el('div', { class: 'hopbar', style: `left:${pct(from)}%;width:${pct(occ) - pct(from)}%;background:${c}` }),
          el('div', { class: 'lagbar', style: `left:${pct(occ)}%;width:${Math.max(0, pct(proj) - pct(occ))}%` }),
          el('div', { class: 'dot', style: `left:${pct(occ)}%;background:${c}` }))));
      return row;
    }));
    shownSteps = new Set(steps.map((s) => s.event_id));
    $('#saga-axis').replaceChildren(el('div', { class: 'ticks' }, ...[0, 0.25, 0.5, 0.75, 1].map((f) => el('span', {}, fmtMs(f * span)))));
    $('#saga').dataset.version = String(v.version);
    $('#saga').dataset.status = v.status;
  }

  // ---- routing: #/ is the overview, #/orders/<id> one saga ----
  function currentSaga() {
    const m = location.hash.match(/^#\/orders\/([A-Za-z0-9_-]{1,64})$/);
    return m ? m[1] : null;
  }
  function route() {
    const id = currentSaga();
    if (id) { showSaga(id); return; }
    closeWatch();
    $('#saga').hidden = true; $('#overview').hidden = false;
    scheduleDraw();
  }
  $('#search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('#search-id').value.trim();
    if (/^[A-Za-z0-9_-]{1,64}$/.test(id)) location.hash = '#/orders/' + id;
  });
  window.addEventListener('hashchange', route);
  window.addEventListener('resize', scheduleDraw);
  connect();
  route();
})();
