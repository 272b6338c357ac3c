// repro ui: the page over the JSON API. Every stored string (names, tags, params, metric keys,
// paths…) reaches the page through textContent or as an encoded URL parameter, never as HTML.
'use strict';

const main = document.getElementById('main');

// An element with attributes ({text} is its text) and children (strings become text nodes).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

// A URL of this server with its query built from pairs (every value encoded).
function url(path, pairs) {
  const q = new URLSearchParams();
  for (const [k, v] of pairs || []) q.append(k, v);
  const s = q.toString();
  return s ? path + '?' + s : path;
}

async function getJson(u) {
  const r = await fetch(u, { credentials: 'same-origin' });
  const body = await r.json().catch(() => ({ error: 'the server answered ' + r.status }));
  if (!r.ok) throw new Error(body.error + (body.hint ? '\nhint: ' + body.hint : ''));
  return body;
}

function showError(where, err) {
  where.append(el('p', { class: 'error', text: String(err.message || err) }));
}

function short(id) { return id ? id.slice(0, 10) : ''; }

function duration(ms) {
  if (ms === null || ms === undefined) return '';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.round(s % 60)).padStart(2, '0') + 's';
  return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
}

function when(t) { return t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : ''; }

function num(v) {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'number') return String(v);
  return Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(4) : String(+v.toPrecision(6));
}

function imageText(img) {
  if (!img) return '';
  return img.reference || img.digest || '';
}

// ---------------------------------------------------------------- runs

const FILTERS = [
  ['status', 'status', 'running,failed'],
  ['name', 'name (glob)', 'bert-*'],
  ['image', 'image', 'trainer'],
  ['tag', 'tag', 'best'],
  ['param', 'param', 'lr=0.1'],
  ['dataset', 'dataset', 'imagenet@sha256:…'],
  ['code', 'commit', 'a1b2c3d'],
  ['host', 'host', 'gpu-01'],
  ['since', 'since', '7d'],
  ['where', 'where', 'metric:acc>=0.9'],
  ['sweep', 'sweep', ''],
];
const FIELD_SORTS = ['started', 'duration', 'status', 'name', 'host', 'image'];
let refreshTimer = null;

function viewParams() { return new URLSearchParams(location.search); }

function setView(p, push) {
  const s = p.toString();
  const u = location.pathname + (s ? '?' + s : '');
  if (push) history.pushState(null, '', u); else history.replaceState(null, '', u);
  route();
}

// The column chosen (`cols=param:lr,metric:acc`), as [kind, key].
function chosenColumns(p) {
  return (p.get('cols') || '').split(',').filter(Boolean).map(c => {
    const i = c.indexOf(':');
    return [c.slice(0, i), c.slice(i + 1)];
  }).filter(([k, key]) => (k === 'param' || k === 'metric') && key);
}

async function runsPage() {
  const p = viewParams();
  clear(main);
  main.append(el('h1', { text: 'Runs' }));
  const form = el('form', { class: 'filters', id: 'filters' });
  for (const [name, label, hint] of FILTERS) {
    form.append(el('label', {}, label,
      el('input', { name, id: 'f-' + name, value: p.get(name) || '', placeholder: hint })));
  }
  const sort = el('select', { name: 'sort', id: 'f-sort' });
  const current = p.get('sort') || 'started';
  for (const s of FIELD_SORTS) sort.append(el('option', { value: s, text: s, selected: s === current }));
  form.append(el('label', {}, 'sort', sort));
  form.append(el('button', { type: 'submit', id: 'apply', text: 'Apply' }));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [name] of FILTERS) {
      const v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    if (sort.value !== 'started') q.set('sort', sort.value);
    for (const k of ['cols', 'limit', 'reverse']) if (p.get(k)) q.set(k, p.get(k));
    setView(q, true);
  });
  main.append(form);
  const bar = el('div', { class: 'bar' });
  const table = el('div', { id: 'runs' });
  main.append(bar, table);

  // The metric keys, for sorting by one.
  getJson('/api/metric-keys').then(d => {
    for (const k of d.keys) {
      for (const dir of ['', ':asc']) {
        const v = 'metric:' + k + dir;
        sort.append(el('option', { value: v, text: 'metric ' + k + (dir ? ' ↑' : ' ↓'), selected: v === current }));
      }
    }
  }).catch(() => {});

  const api = [];
  for (const [k, v] of p) if (k !== 'cols' && k !== 'token') api.push([k, v]);
  let data;
  try {
    data = await getJson(url('/api/runs', api));
  } catch (e) {
    showError(table, e);
    return;
  }
  renderRuns(p, data, bar, table);
  clearTimeout(refreshTimer);
  if (data.runs.some(r => r.status === 'running')) {
    refreshTimer = setTimeout(() => { if (location.pathname === '/' || location.pathname === '/runs') route(); }, 3000);
  }
}

function renderRuns(p, data, bar, table) {
  const cols = chosenColumns(p);
  const offset = data.offset;
  const first = data.runs.length ? offset + 1 : 0;
  const last = offset + data.runs.length;
  const of = data.total !== null ? ' of ' + data.total : data.total_over ? ' of more than 10000' : data.more ? '+' : '';
  bar.append(el('span', { id: 'count', text: `runs ${first}–${last}${of}` }));
  const page = (delta) => {
    const q = viewParams();
    const o = Math.max(0, offset + delta * data.limit);
    if (o) q.set('offset', o); else q.delete('offset');
    setView(q, true);
  };
  bar.append(el('button', { id: 'prev', text: '‹ Prev', disabled: offset === 0, onclick: () => page(-1) }));
  bar.append(el('button', { id: 'next', text: 'Next ›', disabled: !data.more, onclick: () => page(1) }));
  const compare = el('button', { id: 'compare', text: 'Compare selected', disabled: true });
  bar.append(compare);

  // The column chooser: params and metrics of the runs shown.
  const params = new Set(), metrics = new Set();
  for (const r of data.runs) {
    Object.keys(r.params || {}).forEach(k => params.add(k));
    Object.keys(r.metrics || {}).forEach(k => metrics.add(k));
  }
  const chooser = el('details', { class: 'columns', id: 'columns' }, el('summary', { text: 'Columns' }));
  const has = (kind, key) => cols.some(([k, c]) => k === kind && c === key);
  const toggle = (kind, key) => {
    const q = viewParams();
    const now = chosenColumns(q).filter(([k, c]) => !(k === kind && c === key));
    if (!has(kind, key)) now.push([kind, key]);
    if (now.length) q.set('cols', now.map(([k, c]) => k + ':' + c).join(',')); else q.delete('cols');
    setView(q, false);
  };
  for (const [kind, keys] of [['param', params], ['metric', metrics]]) {
    for (const key of [...keys].sort()) {
      chooser.append(el('label', {},
        el('input', { type: 'checkbox', checked: has(kind, key), 'data-col': kind + ':' + key, onchange: () => toggle(kind, key) }),
        ' ' + kind + ' ' + key));
    }
  }
  if (params.size + metrics.size === 0) chooser.append(el('span', { class: 'muted', text: 'no params or metrics on this page' }));
  bar.after(chooser);

  const sortNow = p.get('sort') || 'started';
  const header = el('tr');
  const th = (label, sortKey) => {
    const h = el('th', { text: label });
    if (sortKey) {
      const asc = sortNow === sortKey + ':asc';
      h.className = 'sortable' + (sortNow === sortKey || asc ? ' sorted' : '') + (asc ? ' asc' : '');
      h.setAttribute('data-sort', sortKey);
      h.addEventListener('click', () => {
        const q = viewParams();
        const isMetric = sortKey.startsWith('metric:');
        q.set('sort', isMetric && sortNow === sortKey ? sortKey + ':asc' : sortKey);
        q.delete('offset');
        setView(q, true);
      });
    }
    return h;
  };
  header.append(th(''), th('id'), th('name', 'name'), th('status', 'status'), th('started', 'started'),
    th('duration', 'duration'), th('image', 'image'), th('tags'));
  for (const [kind, key] of cols) header.append(th(kind + ' ' + key, kind === 'metric' ? 'metric:' + key : null));
  const body = el('tbody');
  const selected = new Set();
  for (const r of data.runs) {
    const box = el('input', { type: 'checkbox', 'data-id': r.id, onchange: ev => {
      if (ev.target.checked) selected.add(r.id); else selected.delete(r.id);
      compare.disabled = selected.size < 2;
    } });
    const row = el('tr', { 'data-id': r.id },
      el('td', {}, box),
      el('td', { class: 'mono' }, el('a', { href: '/run/' + encodeURIComponent(r.id), text: short(r.id) })),
      el('td', { class: 'name', text: r.name || '' }),
      el('td', { class: 'status-' + r.status, text: r.status }),
      el('td', { text: when(r.started_at) }),
      el('td', { class: 'num', text: duration(r.duration_ms) }),
      el('td', { class: 'mono', text: imageText(r.image) }),
      el('td', {}, (r.tags || []).map(t => el('span', { class: 'tag', text: t }))));
    for (const [kind, key] of cols) {
      const v = kind === 'param' ? (r.params || {})[key] : ((r.metrics || {})[key] || {}).last;
      row.append(el('td', { class: kind === 'metric' ? 'num' : '', text: kind === 'metric' ? num(v) : (v === undefined ? '' : v) }));
    }
    body.append(row);
  }
  compare.addEventListener('click', () => {
    location.href = url('/compare', [...selected].map(id => ['id', id]));
  });
  table.append(el('table', { id: 'runs-table' }, el('thead', {}, header), body));
  if (!data.runs.length) table.append(el('p', { class: 'muted', text: 'No runs match.' }));
}

// ---------------------------------------------------------------- one run

// Any JSON value as nested facts (objects as definition lists, arrays of scalars joined).
function facts(v) {
  if (v === null || v === undefined) return el('span', { class: 'muted', text: '—' });
  if (Array.isArray(v)) {
    if (v.every(x => typeof x !== 'object' || x === null)) return el('span', { class: 'mono', text: v.map(String).join(' ') });
    return el('div', {}, v.map(x => facts(x)));
  }
  if (typeof v === 'object') {
    const dl = el('dl', { class: 'facts' });
    for (const [k, x] of Object.entries(v)) dl.append(el('dt', { text: k }), el('dd', {}, facts(x)));
    return dl;
  }
  return el('span', { text: String(v) });
}

// A section: a heading and its content, with an id to find it by.
function section(id, title, ...kids) {
  return el('section', { class: 'part', id }, el('h2', { text: title }), ...kids);
}

// A definition list of the given [label, value] pairs that have a value.
function pairs(list) {
  const dl = el('dl', { class: 'facts' });
  for (const [k, v] of list) {
    if (v === null || v === undefined || v === '') continue;
    dl.append(el('dt', { text: k }), el('dd', {}, v instanceof Node ? v : el('span', { class: 'mono', text: String(v) })));
  }
  return dl;
}

function bytes(n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : String(v)) + ' ' + u[i];
}

const RESOLVED = {
  registry: 'registry: the manifest was fetched and its body hash checked when the run started',
  pinned: 'pinned: the digest was written in the reference',
  engine: 'engine: the local engine reported it (RepoDigests)',
  unpinned: 'unpinned: not resolved (--allow-unpinned)',
};

async function runPage(id) {
  clear(main);
  let run;
  try {
    run = await getJson('/api/runs/' + encodeURIComponent(id));
  } catch (e) {
    showError(main, e);
    return;
  }
  const rid = encodeURIComponent(run.id);
  main.append(el('h1', {}, el('span', { id: 'run-name', text: run.name || short(run.id) }), ' ',
    el('span', { class: 'status-' + run.status, text: run.status })));
  const head = {
    id: run.id, started: when(run.started_at), duration: duration(run.duration_ms),
    exit_code: run.exit_code, image: run.image && run.image.reference,
    digest: run.image && run.image.digest, commit: run.code && run.code.commit,
    tags: (run.tags || []).join(' '),
  };
  main.append(facts(head));
  const links = el('p', { class: 'bar', id: 'lineage' });
  if (run.rerun_of) links.append('re-run of ', el('a', { href: '/run/' + encodeURIComponent(run.rerun_of), text: short(run.rerun_of) }));
  main.append(links);
  getJson(url('/api/runs', [['rerun-of', run.id], ['limit', '100']])).then(d => {
    if (d.runs.length) {
      links.append(' re-runs: ');
      for (const r of d.runs) links.append(el('a', { href: '/run/' + encodeURIComponent(r.id), text: short(r.id) }), ' ');
    }
  }).catch(() => {});

  const keys = Object.keys(run.metrics || {});
  if (keys.length) {
    main.append(el('h2', { text: 'Metrics' }));
    const t = el('table', {}, el('tr', {}, ['metric', 'last', 'min', 'max', 'count'].map(h => el('th', { text: h }))));
    for (const k of keys) {
      const m = run.metrics[k];
      t.append(el('tr', {}, el('td', { text: k }), ['last', 'min', 'max', 'count'].map(s => el('td', { class: 'num', text: num(m[s]) }))));
    }
    main.append(t);
    for (const k of keys.filter(k => run.metrics[k].count > 1)) {
      main.append(el('img', { class: 'chart', alt: 'chart of ' + k, src: url('/api/chart.svg', [['run', run.id], ['metric', k]]) }));
    }
  }

  // The image: what ran, how the digest was known, its labels; its lineage page.
  if (run.image) {
    const img = run.image;
    const labels = Object.entries(img.labels || {});
    main.append(section('image', 'Image',
      pairs([['reference', img.reference], ['digest', img.digest], ['index digest', img.index_digest],
        ['platform', img.platform], ['how', RESOLVED[img.resolved_by] || img.resolved_by],
        ['lineage', el('a', { href: url('/images', []), text: 'every tag and digest of the images' })],
        ['runs of this digest', img.digest ? el('a', { href: url('/', [['digest', img.digest]]), text: 'list' }) : null]]),
      labels.length ? el('table', { id: 'labels' }, el('tr', {}, el('th', { text: 'label' }), el('th', { text: 'value' })),
        labels.map(([k, v]) => el('tr', {}, el('td', { class: 'mono', text: k }), el('td', { class: 'mono', text: v })))) : null));
  }

  // The code: commit, branch, and the uncommitted patch the re-run script applies.
  if (run.code) {
    const c = run.code;
    const part = section('code', 'Code', pairs([['repository', c.repo_root], ['remote', c.remote], ['commit', c.commit],
      ['branch', c.branch], ['working tree', c.dirty ? 'dirty: a patch is recorded' : 'clean'],
      ['patch sha256', c.patch_sha256], ['untracked files', (c.untracked || []).length ? c.untracked.join(' ') : null]]));
    main.append(part);
    if (c.dirty && c.patch_sha256) {
      const patchUrl = '/api/runs/' + rid + '/patch';
      part.append(el('h3', {}, 'Patch ', el('a', { href: patchUrl, download: short(run.id) + '.patch', id: 'patch-download', text: '(download)' })));
      const pre = el('pre', { class: 'mono', id: 'patch', text: 'loading…' });
      part.append(pre);
      fetch(patchUrl, { credentials: 'same-origin' }).then(r => r.text()).then(t => { pre.textContent = t; });
    }
  }

  // The data: each dataset, its version and digest, and the runs that read the same.
  if ((run.datasets || []).length) {
    const t = el('table', { id: 'datasets' }, el('tr', {}, ['name', 'kind', 'version', 'digest', 'files', 'size', 'runs'].map(h => el('th', { text: h }))));
    for (const d of run.datasets) {
      const f = d.digest ? d.name + '@' + d.digest : d.version ? d.name + '@' + d.version : d.name;
      t.append(el('tr', {}, el('td', {}, el('a', { href: url('/datasets', [['name', d.name]]), text: d.name })),
        el('td', { text: d.kind }), el('td', { class: 'mono hash', text: d.version && d.version !== d.digest ? d.version : (d.version ? '= digest' : '') }),
        el('td', { class: 'mono hash', text: d.digest || '' }),
        el('td', { class: 'num', text: d.files === null || d.files === undefined ? '' : String(d.files) }),
        el('td', { class: 'num', text: bytes(d.bytes) }),
        el('td', {}, el('a', { href: url('/', [['dataset', f]]), text: 'same data' }))));
    }
    main.append(section('data', 'Datasets', t));
  }

  if ((run.outputs || []).length) {
    const t = el('table', { id: 'outputs' }, el('tr', {}, ['path', 'bytes', 'sha256', 'kept'].map(h => el('th', { text: h }))));
    run.outputs.forEach((o, i) => {
      const path = o.kept
        ? el('a', { href: '/api/runs/' + rid + '/outputs/' + i, download: '', text: o.path })
        : el('span', { text: o.path });
      t.append(el('tr', {}, el('td', { class: 'mono' }, path), el('td', { class: 'num', text: o.bytes === null ? '' : String(o.bytes) }),
        el('td', { class: 'mono hash', text: o.sha256 || '' }), el('td', { text: o.kept ? 'kept' : (o.not_kept || 'not kept') })));
    });
    main.append(section('outputs-part', 'Outputs', t));
  }
  main.append(el('h2', { text: 'Params' }), facts(run.params));
  main.append(el('h2', { text: 'Command' }), el('pre', { class: 'mono', id: 'command', text: (run.command || []).join(' ') }));
  main.append(section('execution', 'Execution', pairs([['host', run.host], ['user', run.user], ['platform', run.platform],
    ['working directory', run.cwd], ['mode', run.exec && run.exec.mode], ['engine', run.exec && run.exec.engine],
    ['engine args', run.exec && (run.exec.engine_args || []).join(' ')], ['gpus', run.exec && run.exec.gpus],
    ['signal', run.signal]]), run.scheduler ? el('div', {}, el('h3', { text: 'Scheduler' }), facts(run.scheduler)) : null,
    Object.keys(run.env || {}).length ? el('div', {}, el('h3', { text: 'Variables' }), facts(run.env)) : null));
  if (run.environment) {
    const e = run.environment;
    const py = e.python || {};
    const pk = Object.entries(py.packages || {});
    main.append(section('environment', 'Environment', pairs([['python', py.version ? py.version + ' (' + (py.kind || '') + ')' : null],
      ['executable', py.executable], ['packages', pk.length ? String(pk.length) : null]]),
      el('details', {}, el('summary', { text: 'everything (packages, system, lock files)' }), facts(e))));
  }
  const prov = section('provenance', 'Attestations and archives', el('p', { class: 'muted', text: 'loading…' }));
  main.append(prov);
  getJson('/api/runs/' + rid + '/provenance').then(p => {
    prov.lastChild.remove();
    if (!p.attestations.length && !p.archives.length) prov.append(el('p', { class: 'muted', text: 'No attestation written (repro attest) and no archived image (repro image archive).' }));
    if (p.attestations.length) prov.append(el('table', { id: 'attestations' }, el('tr', {}, ['document sha256', 'signed by key', 'written to', 'when'].map(h => el('th', { text: h }))),
      p.attestations.map(a => el('tr', {}, el('td', { class: 'mono', text: a.sha256 }), el('td', { class: 'mono', text: a.keyid || 'unsigned' }),
        el('td', { class: 'mono', text: a.path || 'stdout' }), el('td', { text: when(a.created_at) })))));
    if (p.archives.length) prov.append(el('table', { id: 'archives' }, el('tr', {}, ['archive', 'location', 'digest', 'when'].map(h => el('th', { text: h }))),
      p.archives.map(a => el('tr', {}, el('td', { text: a.kind }), el('td', { class: 'mono', text: a.location }),
        el('td', { class: 'mono', text: a.digest }), el('td', { text: when(a.archived_at) })))));
  }).catch(e => { prov.lastChild.remove(); showError(prov, e); });

  const scriptUrl = '/api/runs/' + rid + '/script';
  main.append(el('h2', {}, 'Re-run script ', el('a', { href: scriptUrl, download: 'rerun-' + short(run.id) + '.sh', id: 'script-download', text: '(download)' }), ' ',
    el('button', { id: 'copy-script', text: 'Copy', onclick: () => navigator.clipboard && navigator.clipboard.writeText(document.getElementById('script').textContent) })));
  const pre = el('pre', { class: 'mono', id: 'script', text: 'loading…' });
  main.append(pre);
  fetch(scriptUrl, { credentials: 'same-origin' }).then(r => r.text()).then(t => { pre.textContent = t; });
  main.append(el('details', {}, el('summary', { text: 'Everything recorded (show --json)' }), facts(run)));
}

// ---------------------------------------------------------------- compare

// A run as dotted paths → display text (objects flattened, arrays of scalars joined).
function flatten(v, prefix, out) {
  if (v !== null && typeof v === 'object' && !(Array.isArray(v) && v.every(x => typeof x !== 'object' || x === null))) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? prefix + '.' + k : k, out);
  } else {
    out[prefix] = v === null || v === undefined ? '' : Array.isArray(v) ? v.map(String).join(' ') : String(v);
  }
  return out;
}

const COMPARE_SKIP = /^(schema_version|id|boot_id|pid)$|^(started_at|ended_at|duration_ms)$/;

async function comparePage() {
  clear(main);
  const ids = viewParams().getAll('id');
  main.append(el('h1', { text: 'Compare' }));
  if (ids.length < 2) {
    main.append(el('p', { class: 'muted', text: 'Pick two or more runs on the Runs page (the checkboxes), then Compare selected.' }));
    return;
  }
  let runs;
  try {
    runs = await Promise.all(ids.map(id => getJson('/api/runs/' + encodeURIComponent(id))));
  } catch (e) {
    showError(main, e);
    return;
  }
  const only = viewParams().get('diff') === '1';
  const sw = el('input', { type: 'checkbox', id: 'only-diff', checked: only });
  sw.addEventListener('change', () => {
    const q = viewParams();
    if (sw.checked) q.set('diff', '1'); else q.delete('diff');
    setView(q, false);
  });
  main.append(el('p', {}, el('label', {}, sw, ' only differences')));
  const flat = runs.map(r => flatten(r, '', {}));
  const order = ['name', 'status', 'params.', 'metrics.', 'image.', 'code.', 'datasets', 'command', 'env.', 'exec.', 'host', 'scheduler', 'outputs', 'environment.'];
  const rank = k => { const i = order.findIndex(o => k === o || k.startsWith(o)); return i < 0 ? order.length : i; };
  const keys = [...new Set(flat.flatMap(f => Object.keys(f)))].filter(k => !COMPARE_SKIP.test(k))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const head = el('tr', {}, el('th', { text: '' }), runs.map(r =>
    el('th', {}, el('a', { href: '/run/' + encodeURIComponent(r.id), text: (r.name ? r.name + ' ' : '') + short(r.id) }))));
  const t = el('table', { id: 'compare-table' }, el('thead', {}, head));
  for (const k of keys) {
    const vals = flat.map(f => (k in f ? f[k] : ''));
    const same = vals.every(v => v === vals[0]);
    if (only && same) continue;
    t.append(el('tr', { class: same ? 'same' : 'differs', 'data-key': k }, el('td', { class: 'mono', text: k }),
      vals.map(v => el('td', { class: 'mono', text: v }))));
  }
  main.append(t);
  const common = Object.keys(runs[0].metrics || {}).filter(k => runs.every(r => r.metrics && r.metrics[k] && r.metrics[k].count > 1));
  if (common.length) main.append(el('h2', { text: 'Metric histories' }));
  for (const k of common) {
    main.append(el('img', { class: 'chart', alt: 'chart of ' + k, src: url('/api/chart.svg', runs.map(r => ['run', r.id]).concat([['metric', k]])) }));
  }
}

// ---------------------------------------------------------------- images

async function imagesPage() {
  clear(main);
  main.append(el('h1', { text: 'Images' }));
  main.append(el('p', { class: 'muted', text: 'From the record: the tags the runs named and the digests each resolved to. What the registry holds now is asked only when you press a repository\'s button (repro audit; nothing is stored).' }));
  let data;
  try {
    data = await getJson('/api/images');
  } catch (e) {
    showError(main, e);
    return;
  }
  if (!data.repositories.length) {
    main.append(el('p', { class: 'muted', text: 'No run used an image yet.' }));
    return;
  }
  for (const repo of data.repositories) {
    const section = el('section', { class: 'repo', 'data-repo': repo.name });
    section.append(el('h2', { text: repo.name }));
    const t = el('table', {}, el('tr', {}, ['tag', 'digest', 'first used', 'last used', 'runs', 'archived', 'registry now']
      .map(h => el('th', { text: h }))));
    for (const tag of repo.tags) {
      tag.digests.forEach((d, i) => {
        const runs = d.digest
          ? el('a', { href: url('/', [['digest', d.digest]]), text: String(d.runs) })
          : el('a', { href: url('/', [['image', d.reference]]), text: String(d.runs) });
        t.append(el('tr', { 'data-tag': tag.tag, 'data-digest': d.digest || '' },
          el('td', {}, i === 0 ? el('span', {}, el('span', { class: 'tag', text: tag.tag }),
            tag.moved ? el('span', { class: 'status-killed', text: ' moved' }) : null) : ''),
          el('td', { class: 'mono', text: d.digest || 'unpinned' }),
          el('td', { text: when(d.first) }),
          el('td', { text: when(d.last) }),
          el('td', { class: 'num' }, runs),
          el('td', { class: 'num', text: d.archived ? String(d.archived) : '' }),
          el('td', { class: 'registry muted', text: d.digest ? 'not asked' : '' })));
      });
    }
    const ask = el('button', { class: 'audit', text: 'Ask the registry (repro audit)' });
    const said = el('span', { class: 'muted' });
    ask.addEventListener('click', async () => {
      ask.disabled = true;
      said.textContent = ' asking…';
      try {
        const a = await getJson(url('/api/audit', [['repository', repo.name]]));
        said.textContent = a.at_risk ? ' some digests are gone from the registry with no archive: those runs cannot be re-run as recorded'
          : ' every digest can still be pulled (or is archived)';
        said.className = a.at_risk ? 'status-failed' : 'muted';
        for (const row of t.querySelectorAll('tr[data-digest]')) {
          const img = a.images.find(i => i.digest === row.getAttribute('data-digest'));
          const cell = row.querySelector('td.registry');
          if (!img) continue;
          const tagNow = img.tag && img.tag.moved ? '; the tag now points at ' + (img.tag.digest || 'nothing (gone)') : '';
          cell.textContent = img.status + (img.error ? ' (' + img.error + ')' : '') + tagNow;
          cell.className = 'registry status-' + ({ present: 'succeeded', archived: 'killed', missing: 'failed', unknown: 'failed' }[img.status] || '');
        }
      } catch (e) {
        said.textContent = ' ' + String(e.message || e);
        said.className = 'error';
      }
      ask.disabled = false;
    });
    section.append(el('p', {}, ask, said));
    section.append(t);
    main.append(section);
  }
}

// ---------------------------------------------------------------- datasets

async function datasetsPage() {
  clear(main);
  main.append(el('h1', { text: 'Datasets' }));
  let data;
  try {
    data = await getJson('/api/datasets');
  } catch (e) {
    showError(main, e);
    return;
  }
  const only = viewParams().get('name');
  const list = data.datasets.filter(d => !only || d.name === only);
  if (only) main.append(el('p', {}, el('a', { href: '/datasets', text: 'all datasets' })));
  if (!list.length) {
    main.append(el('p', { class: 'muted', text: only ? 'No run read a dataset of this name.' : 'No run read a dataset yet (repro run --dataset).' }));
    return;
  }
  for (const d of list) {
    const part = el('section', { class: 'dataset', 'data-name': d.name });
    part.append(el('h2', {}, el('a', { href: url('/datasets', [['name', d.name]]), text: d.name }), ' ',
      el('span', { class: 'muted', text: d.versions.length + (d.versions.length === 1 ? ' version' : ' versions') })));
    const t = el('table', {}, el('tr', {}, ['version', 'digest', 'kind', 'location', 'files', 'size', 'first used', 'last used', 'runs']
      .map(h => el('th', { text: h }))));
    for (const v of d.versions) {
      t.append(el('tr', { 'data-digest': v.digest || '' },
        el('td', { class: 'mono hash', text: v.version && v.version !== v.digest ? v.version : (v.version ? '= digest' : '') }),
        el('td', { class: 'mono hash', text: v.digest || 'not hashed' }),
        el('td', { text: v.kind }),
        el('td', { class: 'mono', text: v.uri || '' }),
        el('td', { class: 'num', text: v.files === null ? '' : String(v.files) }),
        el('td', { class: 'num', text: bytes(v.bytes) }),
        el('td', { text: when(v.first) }),
        el('td', { text: when(v.last) }),
        el('td', { class: 'num' }, el('a', { href: url('/', [['dataset', v.filter]]), text: String(v.runs) }))));
    }
    part.append(t);
    main.append(part);
  }
}

// ---------------------------------------------------------------- routing

function route() {
  clearTimeout(refreshTimer);
  const path = location.pathname;
  let m;
  if (path === '/' || path === '/runs') runsPage();
  else if ((m = path.match(/^\/run\/([0-9a-z]+)$/))) runPage(m[1]);
  else if (path === '/compare') comparePage();
  else if (path === '/images') imagesPage();
  else if (path === '/datasets') datasetsPage();
  else { clear(main); main.append(el('p', { class: 'error', text: 'No page here.' })); }
}

window.addEventListener('popstate', route);
route();
