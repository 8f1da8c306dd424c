// Live-analytics load with the official client: PER_USER sockets for each user, messages
// POSTed at RATE per second spread over the users, in phases with the sockets subscribed to
// analytics ("on") or connected but not subscribed ("off"). Server CPU is read from
// /proc/PID/stat at the edges of each measured window; the hub's analytics counters from
// /metrics. Prints one JSON line.
// usage: node analytics.js URL TOKENS_JSON PID CONFIG_JSON   (NODE_PATH pointing at the kit)
// CONFIG_JSON: {"perUser": 10, "rate": 100, "seconds": 20, "warmup": 3, "settle": 3,
//               "drain": 4, "phases": ["off", "on", "off", "on"], "out": "result.json"}
const { io } = require('socket.io-client');
const fs = require('fs');

const [url, tokensFile, pidArg, configJson] = process.argv.slice(2);
const cfg = JSON.parse(configJson);
const PID = Number(pidArg);
const { users } = JSON.parse(fs.readFileSync(tokensFile));
const TYPES = ['dashboard_stats', 'message_stats', 'usage_stats'];
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const ticks = () => {
  const fields = fs.readFileSync(`/proc/${PID}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
};
const TICK_MS = 10; // CLK_TCK = 100

async function metrics() {
  const text = await (await fetch(`${url}/metrics`)).text();
  const values = {};
  for (const line of text.split('\n')) {
    const match = line.match(/^(hub_analytics_[a-z_]+(?:\{part="[a-z]+"\})?|hub_events_out_total\{event="analytics_update"\})\s+([0-9.e+-]+)$/);
    if (match) values[match[1]] = Number(match[2]);
  }
  return values;
}

function openSocket(user) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token: user.token }, transports: ['websocket'],
      forceNew: true, reconnection: false, timeout: 20000 });
    socket.userId = user.id;
    socket.counts = Object.fromEntries(TYPES.map((t) => [t, 0]));
    socket.lastAt = {};
    socket.minGap = {};
    socket.last = {};
    socket.counting = false;
    socket.on('analytics_update', (update) => {
      const at = now();
      socket.last[update.type] = update.data;
      if (!socket.counting) { socket.lastAt[update.type] = at; return; }
      socket.counts[update.type] += 1;
      if (socket.lastAt[update.type] !== undefined) {
        const gap = at - socket.lastAt[update.type];
        socket.minGap[update.type] = Math.min(socket.minGap[update.type] ?? Infinity, gap);
      }
      socket.lastAt[update.type] = at;
    });
    socket.on('disconnect', (reason) => { socket.lost = reason; });
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(new Error(`connect_error ${err.message}`)));
  });
}

async function inBatches(items, size, work) {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}

function ack(socket, event) {
  return new Promise((resolve, reject) => {
    socket.timeout(30000).emit(event, (err, answer) => {
      if (err || !answer || !answer.ok) reject(new Error(`${event}: ${err || JSON.stringify(answer)}`));
      else resolve();
    });
  });
}

let sequence = 0;
const posts = { accepted: 0, refused: 0, errors: 0, statuses: {} };

async function postMessage(user) {
  sequence += 1;
  // One in twenty goes to the simulator's invalid number, so "failed" moves too (a different
  // user's on each lap over the users).
  const refused = (sequence + Math.floor(sequence / users.length)) % 20 === 0;
  const phone = refused ? '+15005550001' : `+1555${String(sequence).padStart(7, '0')}`;
  try {
    const response = await fetch(`${url}/api/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${user.token}` },
      body: JSON.stringify({ body: `analytics benchmark ${sequence}`, recipients: [phone] }),
    });
    await response.arrayBuffer();
    if (response.status === 202) posts.accepted += 1;
    else {
      posts.refused += 1;
      posts.statuses[response.status] = (posts.statuses[response.status] || 0) + 1;
    }
  } catch (err) {
    posts.errors += 1;
  }
}

// With cfg.writer, messages are made by that process (bench/analytics_writer.py), which
// answers each command line with one JSON line.
let writer = null;
const answers = [];
function startWriter() {
  const { spawn } = require('child_process');
  writer = spawn(cfg.writer[0], cfg.writer.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  let buffered = '';
  writer.stdout.on('data', (chunk) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      answers.shift()(JSON.parse(line));
    }
  });
}
function tellWriter(command) {
  return new Promise((resolve) => { answers.push(resolve); writer.stdin.write(`${command}\n`); });
}
async function created() {
  return writer ? (await tellWriter('count')).created : posts.accepted;
}

// Messages at cfg.rate per second, round robin over the users, until stop() is called:
// POSTed, or made by the writer.
function drive() {
  if (!cfg.rate) return async () => 0;
  if (writer) {
    const ready = tellWriter(`rate ${cfg.rate}`);
    return async () => {
      const before = (await ready).created;
      return (await tellWriter('rate 0')).created - before;
    };
  }
  let running = true;
  let sent = 0;
  const started = now();
  const inflight = new Set();
  const loop = (async () => {
    while (running) {
      const user = users[sent % users.length];
      sent += 1;
      const request = postMessage(user).finally(() => inflight.delete(request));
      inflight.add(request);
      const wait = started + (sent * 1000) / cfg.rate - now();
      if (wait > 0) await sleep(wait);
    }
  })();
  return async () => {
    running = false;
    await loop;
    await Promise.all([...inflight]);
    return sent;
  };
}

(async () => {
  const out = { connections: 0, phases: [] };
  if (cfg.writer) startWriter();
  const sockets = [];
  const plan = [];
  for (let k = 0; k < cfg.perUser; k += 1) for (const user of users) plan.push(user);
  const connectStarted = now();
  await inBatches(plan, 100, async (user) => { sockets.push(await openSocket(user)); });
  out.connections = sockets.length;
  out.connectSeconds = +((now() - connectStarted) / 1000).toFixed(2);
  let subscribed = false;
  for (const kind of cfg.phases) {
    if (kind === 'on' && !subscribed) {
      const started = now();
      await inBatches(sockets, 100, (socket) => ack(socket, 'subscribe_analytics'));
      subscribed = true;
      out.subscribeSeconds = +((now() - started) / 1000).toFixed(2);
    } else if (kind === 'off' && subscribed) {
      await inBatches(sockets, 100, (socket) => ack(socket, 'unsubscribe_analytics'));
      subscribed = false;
    }
    await sleep(cfg.settle * 1000);
    const stop = drive();
    await sleep(cfg.warmup * 1000);
    const before = await metrics();
    const created0 = await created();
    for (const socket of sockets) {
      socket.counting = true;
      for (const t of TYPES) socket.counts[t] = 0;
      socket.minGap = {};
    }
    // The parent may profile the window: it is told when one starts.
    console.error(JSON.stringify({ window: kind, index: out.phases.length, seconds: cfg.seconds }));
    const t0 = now();
    const c0 = ticks();
    await sleep(cfg.seconds * 1000);
    const c1 = ticks();
    const t1 = now();
    for (const socket of sockets) socket.counting = false;
    const created1 = await created();
    const after = await metrics();
    const seconds = (t1 - t0) / 1000;
    const phase = {
      kind, seconds: +seconds.toFixed(2), startedAt: Date.now() - (now() - t0),
      serverCpuMs: (c1 - c0) * TICK_MS,
      serverCpuShare: +(((c1 - c0) * TICK_MS) / (t1 - t0)).toFixed(4),
      messagesCreatedPerSecond: +((created1 - created0) / seconds).toFixed(1),
      metrics: Object.fromEntries(Object.keys(after).map((k) => [k, +(after[k] - (before[k] || 0)).toFixed(6)])),
    };
    if (kind === 'on') {
      const perSocket = Object.fromEntries(TYPES.map((t) => [t, sockets.map((s) => s.counts[t] / seconds)]));
      phase.updatesPerSubscriberPerSecond = Object.fromEntries(TYPES.map((t) => {
        const rates = perSocket[t];
        return [t, { mean: +(rates.reduce((x, y) => x + y, 0) / rates.length).toFixed(3),
          max: +Math.max(...rates).toFixed(3), min: +Math.min(...rates).toFixed(3) }];
      }));
      phase.minGapMs = Object.fromEntries(TYPES.map((t) => [t, Math.round(Math.min(
        ...sockets.map((s) => s.minGap[t] ?? Infinity)))]));
      phase.updatesReceived = sockets.reduce((x, s) => x + TYPES.reduce((y, t) => y + s.counts[t], 0), 0);
    }
    phase.sent = await stop();
    out.phases.push(phase);
    console.error(JSON.stringify({ ...phase, metrics: undefined }));
  }
  // Let the last receipts land and the scheduler send the final figures.
  await sleep(cfg.drain * 1000);
  out.posts = writer ? await tellWriter('quit') : posts;
  out.lostSockets = sockets.filter((s) => s.lost).length;
  // The last figures of each user, and whether all of that user's sockets agree on them.
  const last = {};
  let disagreeing = 0;
  for (const socket of sockets) {
    const mine = JSON.stringify(socket.last);
    if (last[socket.userId] === undefined) last[socket.userId] = mine;
    else if (last[socket.userId] !== mine) disagreeing += 1;
  }
  out.socketsDisagreeingWithTheirUser = disagreeing;
  out.lastFigures = Object.fromEntries(Object.entries(last).map(([id, text]) => [id, JSON.parse(text)]));
  // Written to a file: a large line on a pipe is cut short by process.exit().
  fs.writeFileSync(cfg.out, JSON.stringify(out));
  for (const socket of sockets) socket.close();
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
