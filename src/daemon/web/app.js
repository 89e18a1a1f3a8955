// ringtorrent's web UI: talks only to Transmission's RPC at /transmission/rpc.
// Names come from torrents and peers: they are set as text, never as HTML.
'use strict';

const LIST_FIELDS = ['id', 'name', 'status', 'percentDone', 'rateDownload', 'rateUpload',
  'eta', 'peersConnected', 'sizeWhenDone', 'leftUntilDone', 'uploadRatio', 'error',
  'errorString', 'trackerStats', 'isFinished'];
const DETAIL_FIELDS = ['id', 'name', 'files', 'fileStats', 'peers', 'trackerStats',
  'pieces', 'pieceCount'];
const STATUS = ['Stopped', 'Queued to check', 'Checking', 'Queued', 'Downloading',
  'Queued to seed', 'Seeding'];

let sessionId = '';
let selected = null;
let tab = 'files';
let removing = null;

async function rpc(method, args = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await fetch('/transmission/rpc', {
      method: 'POST',
      headers: { 'X-Transmission-Session-Id': sessionId, 'Content-Type': 'application/json' },
      body: JSON.stringify({ method, arguments: args }),
    });
    if (r.status === 409) {
      sessionId = r.headers.get('X-Transmission-Session-Id') || '';
      continue;
    }
    if (!r.ok) throw new Error(`${method}: HTTP ${r.status}`);
    const body = await r.json();
    if (body.result !== 'success') throw new Error(`${method}: ${body.result}`);
    return body.arguments;
  }
  throw new Error(`${method}: no session id`);
}

function show(message) {
  const m = document.getElementById('message');
  m.textContent = message;
  m.hidden = !message;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

const rate = (n) => (n > 0 ? `${bytes(n)}/s` : '');

function eta(s) {
  if (s < 0) return '';
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

function swarm(stats) {
  const known = (stats || []).filter((t) => t.seederCount >= 0);
  if (!known.length) return '';
  const s = Math.max(...known.map((t) => t.seederCount));
  const l = Math.max(...known.map((t) => t.leecherCount));
  return `${s} : ${l}`;
}

function bar(fraction) {
  const pct = `${Math.floor(fraction * 1000) / 10}%`;
  const fill = el('div');
  fill.style.width = pct;
  return el('div', { class: 'bar' }, fill, el('span', { class: 'percent', textContent: pct }));
}

function button(label, cls, onclick) {
  return el('button', { type: 'button', class: cls, textContent: label, title: label,
    onclick: (ev) => { ev.stopPropagation(); onclick(); } });
}

function act(method, id) {
  rpc(method, { ids: [id] }).then(refresh).catch((e) => show(e.message));
}

function row(t) {
  const stopped = t.status === 0;
  const cls = ['torrent', stopped ? 'stopped' : t.status === 6 ? 'seeding' : '',
    t.error ? 'error' : '', t.id === selected ? 'selected' : ''].join(' ');
  const status = t.error ? t.errorString : (t.isFinished && stopped ? 'Finished' : STATUS[t.status]);
  const actions = el('td', { class: 'actions' },
    stopped ? button('Resume', 'resume', () => act('torrent-start', t.id))
      : button('Pause', 'pause', () => act('torrent-stop', t.id)),
    button('Verify', 'verify', () => act('torrent-verify', t.id)),
    button('Remove', 'remove', () => askRemove(t)));
  const tr = el('tr', { class: cls, dataset: { id: t.id }, onclick: () => select(t.id) },
    el('td', { class: 'name', textContent: t.name }),
    el('td', { class: 'progress' }, bar(t.percentDone)),
    el('td', { class: 'status', textContent: status }),
    el('td', { class: 'num down', textContent: rate(t.rateDownload) }),
    el('td', { class: 'num up', textContent: rate(t.rateUpload) }),
    el('td', { class: 'num eta', textContent: eta(t.eta) }),
    el('td', { class: 'num peers', textContent: t.peersConnected }),
    el('td', { class: 'num swarm', textContent: swarm(t.trackerStats) }),
    el('td', { class: 'num ratio', textContent: t.uploadRatio < 0 ? '' : t.uploadRatio.toFixed(2) }),
    actions);
  return tr;
}

async function refresh() {
  try {
    const { torrents } = await rpc('torrent-get', { fields: LIST_FIELDS });
    torrents.sort((a, b) => a.name.localeCompare(b.name));
    document.querySelector('#torrents tbody').replaceChildren(...torrents.map(row));
    document.getElementById('empty').hidden = torrents.length > 0;
    const down = torrents.reduce((s, t) => s + t.rateDownload, 0);
    const up = torrents.reduce((s, t) => s + t.rateUpload, 0);
    document.getElementById('session').textContent =
      `${torrents.length} torrents · ↓ ${rate(down) || '0 B/s'} · ↑ ${rate(up) || '0 B/s'}`;
    if (selected !== null && !torrents.some((t) => t.id === selected)) select(null);
    if (selected !== null) await details();
  } catch (e) {
    show(e.message);
  }
}

function select(id) {
  selected = id;
  document.getElementById('details').hidden = id === null;
  for (const tr of document.querySelectorAll('tr.torrent')) {
    tr.classList.toggle('selected', Number(tr.dataset.id) === id);
  }
  if (id !== null) details();
}

async function details() {
  const id = selected;
  const { torrents } = await rpc('torrent-get', { ids: [id], fields: DETAIL_FIELDS });
  if (!torrents.length || id !== selected) return;
  const t = torrents[0];
  document.getElementById('details-name').textContent = t.name;
  const files = t.files.map((f, i) => {
    const st = t.fileStats[i];
    const box = el('input', { type: 'checkbox', checked: st.wanted, class: 'wanted',
      onchange: () => rpc('torrent-set', { ids: [id], [box.checked ? 'files-wanted' : 'files-unwanted']: [i] })
        .then(refresh).catch((e) => show(e.message)) });
    const prio = el('select', { class: 'priority',
      onchange: () => rpc('torrent-set', { ids: [id], [`priority-${prio.value}`]: [i] }).catch((e) => show(e.message)) },
      el('option', { value: 'high', textContent: 'High' }),
      el('option', { value: 'normal', textContent: 'Normal' }),
      el('option', { value: 'low', textContent: 'Low' }));
    prio.value = st.priority > 0 ? 'high' : st.priority < 0 ? 'low' : 'normal';
    return el('tr', { dataset: { file: i } }, el('td', {}, box), el('td', { class: 'name', textContent: f.name }),
      el('td', { class: 'num', textContent: bytes(f.length) }),
      el('td', { textContent: `${f.length ? Math.floor((100 * f.bytesCompleted) / f.length) : 100}%` }),
      el('td', {}, prio));
  });
  document.querySelector('#tab-files tbody').replaceChildren(...files);
  const peers = t.peers.map((p) => el('tr', {},
    el('td', { class: 'name', textContent: `${p.address}:${p.port}` }),
    el('td', { textContent: p.clientName }), el('td', { textContent: p.flagStr }),
    el('td', { class: 'num', textContent: `${Math.floor(p.progress * 100)}%` }),
    el('td', { class: 'num', textContent: rate(p.rateToClient) }),
    el('td', { class: 'num', textContent: rate(p.rateToPeer) })));
  document.querySelector('#tab-peers tbody').replaceChildren(...peers);
  const count = (n) => (n < 0 ? '?' : n);
  const trackers = t.trackerStats.map((s) => el('tr', {},
    el('td', { class: 'name', textContent: s.announce }),
    el('td', { textContent: s.hasAnnounced ? `${s.lastAnnounceResult} (${s.lastAnnouncePeerCount} peers)` : '' }),
    el('td', { class: 'num', textContent: count(s.seederCount) }),
    el('td', { class: 'num', textContent: count(s.leecherCount) }),
    el('td', { class: 'num', textContent: count(s.downloadCount) })));
  document.querySelector('#tab-trackers tbody').replaceChildren(...trackers);
  drawPieces(t.pieces, t.pieceCount);
}

function drawPieces(b64, count) {
  const canvas = document.getElementById('piece-map');
  const ctx = canvas.getContext('2d');
  const bits = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const has = (i) => (bits[i >> 3] >> (7 - (i & 7))) & 1;
  const w = canvas.width;
  const h = canvas.height;
  ctx.fillStyle = '#e2e5eb';
  ctx.fillRect(0, 0, w, h);
  ctx.fillStyle = '#2f6fdb';
  // One column per slice of pieces, as tall as the share had.
  let done = 0;
  for (let x = 0; x < w; x++) {
    const from = Math.floor((x * count) / w);
    const to = Math.max(from + 1, Math.floor(((x + 1) * count) / w));
    let n = 0;
    for (let i = from; i < to && i < count; i++) n += has(i);
    const share = n / (to - from);
    if (share > 0) ctx.fillRect(x, h * (1 - share), 1, h * share);
  }
  for (let i = 0; i < count; i++) done += has(i);
  document.getElementById('piece-summary').textContent = `${done} of ${count} pieces`;
}

function askRemove(t) {
  removing = t.id;
  document.getElementById('remove-name').textContent = t.name;
  document.getElementById('remove-data').checked = false;
  document.getElementById('remove-dialog').showModal();
}

document.getElementById('remove-dialog').addEventListener('close', (ev) => {
  const d = ev.target;
  if (d.returnValue === 'remove' && removing !== null) {
    const data = document.getElementById('remove-data').checked;
    rpc('torrent-remove', { ids: [removing], 'delete-local-data': data }).then(refresh)
      .catch((e) => show(e.message));
  }
  removing = null;
});

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result.split(',', 2)[1] || '');
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

async function add(ev) {
  ev.preventDefault();
  show('');
  const paused = document.getElementById('add-paused').checked;
  const files = document.getElementById('add-file');
  const link = document.getElementById('add-magnet');
  try {
    for (const f of files.files) {
      await rpc('torrent-add', { metainfo: await readBase64(f), paused });
    }
    if (link.value.trim()) await rpc('torrent-add', { filename: link.value.trim(), paused });
    files.value = '';
    link.value = '';
  } catch (e) {
    show(e.message);
  }
  refresh();
}

document.getElementById('add-form').addEventListener('submit', add);
document.getElementById('add-file').addEventListener('change', add);
for (const b of document.querySelectorAll('#details nav button')) {
  b.addEventListener('click', () => {
    tab = b.dataset.tab;
    for (const o of document.querySelectorAll('#details nav button')) o.classList.toggle('active', o === b);
    for (const t of document.querySelectorAll('.tab')) t.hidden = t.id !== `tab-${tab}`;
  });
}

refresh();
setInterval(refresh, 2000);
