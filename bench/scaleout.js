// Broadcast fan-out and notify latency over one or several hub processes, with the official client.
// usage: node scaleout.js --urls URL[,URL...] --pids PID[,PID...] --tokens TOKENS_JSON
//          [--n 10000] [--k 10] [--notify 200] [--rate 20] [--sustain 0] [--concurrency 32]
//          (run with NODE_PATH at the kit)
// Users are split over the URLs in order (with two URLs: the first half on the first), each
// user's sockets on its own process; every REST call goes to the first URL. Prints one JSON line
// {"hold": true} once its measurements are done, keeps the sockets open until a line arrives on
// stdin (the caller measures with them connected), then prints the results and exits.
const { io } = require('socket.io-client');
const fs = require('fs');
const readline = require('readline');

const a = Object.fromEntries(process.argv.slice(2).reduce((acc, v, i, arr) => (
  v.startsWith('--') ? acc.concat([[v.slice(2), arr[i + 1]]]) : acc), []));
const urls = a.urls.split(',');
const pids = a.pids.split(',').map(Number);
const N = +(a.n || 10000), K = +(a.k || 10), M = +(a.notify || 200), RATE = +(a.rate || 20);
const SUSTAIN = +(a.sustain || 0), CONCURRENCY = +(a.concurrency || 32);
const { users, admin } = JSON.parse(fs.readFileSync(a.tokens));
const api = urls[0];
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((x, y) => x - y);
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2);
};
// CPU time of each server process in ms (utime + stime, CLK_TCK = 100).
const cpu = () => pids.map((pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (+f[11] + +f[12]) * 10;
});
const cpuSince = (before) => cpu().map((ms, i) => ms - before[i]);
const sum = (xs) => xs.reduce((x, y) => x + y, 0);

async function post(path, body, base = api) {
  const r = await fetch(base + path, { method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + admin } });
  return r.status;
}

// Mean wall time of one emit call on the first process, from its Prometheus histogram.
async function emitSeconds() {
  const text = await (await fetch(api + '/metrics')).text();
  const pick = (name) => +(text.match(new RegExp(`^${name} (\\S+)$`, 'm')) || [0, 0])[1];
  return { sum: pick('hub_emit_seconds_sum'), count: pick('hub_emit_seconds_count') };
}

const nodeOfUser = (index) => Math.floor((index * urls.length) / users.length);
const handlers = new Map();
const sockets = [];

async function connectAll(out) {
  let next = 0, fails = 0;
  const c0 = cpu(), t0 = now();
  async function opener() {
    while (next < N) {
      const i = next++;
      const userIndex = i % users.length;
      await new Promise((resolve) => {
        const s = io(urls[nodeOfUser(userIndex)], { auth: { token: users[userIndex].token },
          transports: ['websocket'], forceNew: true, reconnection: false, timeout: 20000 });
        s.userIndex = userIndex;
        s.on('notification', (n) => { const h = handlers.get(n.title); if (h) h(s); });
        // A session the server closes before its CONNECT is answered raises no connect_error.
        const stuck = setTimeout(() => { fails += 1; s.close(); resolve(); }, 30000);
        s.once('connect', () => { clearTimeout(stuck); sockets.push(s); resolve(); });
        s.once('connect_error', (e) => {
          clearTimeout(stuck);
          fails += 1;
          if (fails < 3) console.error('connect_error', e.message);
          resolve();
        });
      });
    }
  }
  await Promise.all(Array.from({ length: 200 }, opener));
  const used = cpuSince(c0);
  out.connect_s = +((now() - t0) / 1000).toFixed(2);
  out.connect_fail = fails;
  out.connections_per_process = urls.map((_, n) => sockets.filter(
    (s) => nodeOfUser(s.userIndex) === n).length);
  out.connect_server_cpu_ms_per_conn = +(sum(used) / Math.max(1, sockets.length)).toFixed(3);
}

async function broadcasts(out) {
  const fan = [];
  const c0 = cpu();
  for (let k = 0; k < K; k++) {
    const title = `bc${k}`;
    const lat = [];
    let done;
    const all = new Promise((r) => (done = r));
    const ts = now();
    handlers.set(title, () => { lat.push(now() - ts); if (lat.length === sockets.length) done(); });
    const status = await post('/api/socket/broadcast', { title, message: 'hello', type: 'system' });
    await Promise.race([all, sleep(20000)]);
    fan.push({ status, got: lat.length, all: pct(lat, 100), p50: pct(lat, 50) });
    handlers.delete(title);
    await sleep(300);
  }
  const used = cpuSince(c0);
  out.broadcast = fan;
  out.broadcast_all_ms_median = pct(fan.map((f) => f.all), 50);
  out.broadcast_all_ms_p99 = pct(fan.map((f) => f.all), 99);
  out.broadcast_p50_ms_median = pct(fan.map((f) => f.p50), 50);
  out.broadcast_missed = sum(fan.map((f) => sockets.length - f.got));
  out.broadcast_server_cpu_us_per_delivery = +((sum(used) * 1000) / (K * sockets.length))
    .toFixed(2);
  out.broadcast_server_cpu_ms_by_process = used;
}

// Notifies at RATE to users whose sockets are on process `node`, POSTed to the first process.
async function notifies(node) {
  const targets = users.map((u, i) => [u, i]).filter(([, i]) => nodeOfUser(i) === node);
  const lat = [], statuses = {};
  const c0 = cpu(), e0 = await emitSeconds(), t0 = now();
  const inflight = [];
  for (let i = 0; i < M; i++) {
    const [user] = targets[i % targets.length];
    const title = `n${node}-${i}`;
    const ts = now();
    handlers.set(title, () => { handlers.delete(title); lat.push(now() - ts); });
    inflight.push(post(`/api/socket/notify/${user.id}`, { title, message: 'x', type: 'system' })
      .then((status) => { statuses[status] = (statuses[status] || 0) + 1; }));
    const wait = t0 + ((i + 1) * 1000) / RATE - now();
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(inflight);
  await sleep(1000);
  const used = cpuSince(c0), e1 = await emitSeconds();
  for (let i = 0; i < M; i++) handlers.delete(`n${node}-${i}`);
  return {
    sent: M, statuses, received: lat.length, missed: M - lat.length,
    achieved_rate: Math.round(M / ((now() - t0 - 1000) / 1000)),
    p50: pct(lat, 50), p99: pct(lat, 99),
    emit_call_us_mean: +(((e1.sum - e0.sum) * 1e6) / Math.max(1, e1.count - e0.count)).toFixed(1),
    server_cpu_ms_by_process: used,
  };
}

// Notifies as fast as the processes take them for SUSTAIN seconds, CONCURRENCY in flight: every
// user in turn, each POSTed to the next process in turn (as a load balancer would spread them).
async function sustained(out) {
  let next = 0, posted = 0, delivered = 0;
  const statuses = {};
  const c0 = cpu(), t0 = now(), end = t0 + SUSTAIN * 1000;
  async function poster() {
    while (now() < end) {
      const k = next++;
      const user = users[k % users.length];
      const title = `s-${k}`;
      handlers.set(title, () => { handlers.delete(title); delivered++; });
      const status = await post(`/api/socket/notify/${user.id}`,
        { title, message: 'x', type: 'system' }, urls[k % urls.length]);
      statuses[status] = (statuses[status] || 0) + 1;
      posted++;
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, poster));
  const seconds = (now() - t0) / 1000;
  await sleep(2000);
  for (let k = 0; k < next; k++) handlers.delete(`s-${k}`);
  out.sustained = {
    seconds: +seconds.toFixed(2), posted, statuses, delivered, missed: posted - delivered,
    per_second: Math.round(posted / seconds), server_cpu_ms_by_process: cpuSince(c0),
  };
}

(async () => {
  const out = { urls, n: N };
  await connectAll(out);
  await sleep(1500);
  await broadcasts(out);
  await sleep(1000);
  out.notify = {};
  for (let node = 0; node < urls.length; node++) {
    out.notify[node === 0 ? 'same' : 'other'] = await notifies(node);
  }
  if (SUSTAIN) await sustained(out);
  console.log(JSON.stringify({ hold: true }));
  await new Promise((resolve) => readline.createInterface({ input: process.stdin })
    .once('line', resolve));
  for (const s of sockets) s.close();
  console.log(JSON.stringify(out));
  process.exit(0);
})();
