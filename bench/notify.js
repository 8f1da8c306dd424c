// Targeted notifies at a fixed rate, timed one by one, with the server's CPU over them.
// Opens N sockets over the tokens' users, posts BROADCASTS broadcasts as the kit does
// before its notify phase, then COUNT notifies at RATE a second, each to the next user,
// then as many GET /healthz at the same rate (the HTTP stack's own cost: the Node peer
// answers it 404 without work), and prints one JSON line: the server's CPU per notify and
// per GET, latency to the first socket of the user, and when the slowest 1 % were sent.
// usage: node notify.js URL TOKENS_JSON N COUNT RATE BROADCASTS SERVER_PID
//        (NODE_PATH at the kit's load/)
const { io } = require('socket.io-client');
const fs = require('fs');

const [url, tokensFile, n, count, rate, broadcasts, pid] = process.argv.slice(2);
const { users, admin } = JSON.parse(fs.readFileSync(tokensFile));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const serverCpuMs = () => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
};
const waiting = new Map();
const post = (path, body) => fetch(url + path, {
  method: 'POST', body: JSON.stringify(body),
  headers: { 'content-type': 'application/json', authorization: 'Bearer ' + admin },
}).then((response) => response.text().then(() => response.status));

(async () => {
  const sockets = [];
  let next = 0;
  let failures = 0;
  await Promise.all(Array.from({ length: 100 }, async () => {
    while (next < Number(n)) {
      const user = users[next++ % users.length];
      await new Promise((resolve) => {
        const socket = io(url, { auth: { token: user.token }, transports: ['websocket'],
          forceNew: true, reconnection: false, timeout: 20000 });
        socket.on('notification', (note) => { const heard = waiting.get(note.title); if (heard) heard(); });
        socket.once('connect', () => { sockets.push(socket); resolve(); });
        socket.once('connect_error', () => { failures += 1; resolve(); });
      });
    }
  }));
  await sleep(1500);
  for (let index = 0; index < Number(broadcasts); index++) {
    await post('/api/socket/broadcast', { title: 'b' + index, message: 'x', type: 'system' });
    await sleep(300);
  }
  const timed = [];
  const statuses = {};
  const inflight = [];
  const cpuBefore = serverCpuMs();
  const started = now();
  for (let index = 0; index < Number(count); index++) {
    const title = 'n' + index;
    const sent = now();
    waiting.set(title, () => {
      waiting.delete(title);
      timed.push([sent - started, now() - sent]);
    });
    inflight.push(post('/api/socket/notify/' + users[index % users.length].id,
      { title, message: 'x', type: 'system' }).then((status) => {
      statuses[status] = (statuses[status] || 0) + 1;
    }));
    const wait = started + ((index + 1) * 1000) / Number(rate) - now();
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(inflight);
  const seconds = (now() - started) / 1000;
  await sleep(500);
  const cpu = serverCpuMs() - cpuBefore;
  const getsBefore = serverCpuMs();
  const getsStarted = now();
  const gets = [];
  for (let index = 0; index < Number(count); index++) {
    gets.push(fetch(url + '/healthz').then((response) => response.text()));
    const wait = getsStarted + ((index + 1) * 1000) / Number(rate) - now();
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(gets);
  await sleep(500);
  const getCpu = serverCpuMs() - getsBefore;
  const percentile = (values, p) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted.length ? +sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))].toFixed(2) : null;
  };
  const latencies = timed.map(([, latency]) => latency);
  console.log(JSON.stringify({
    connected: sockets.length, failures, statuses, heard: timed.length,
    achieved_rate: Math.round(Number(count) / seconds),
    cpu_ms_per_notify: +(cpu / Number(count)).toFixed(3),
    cpu_ms_per_get: +(getCpu / Number(count)).toFixed(3),
    p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: percentile(latencies, 100),
    p99_after_first_second: percentile(timed.filter(([at]) => at >= 1000).map(([, l]) => l), 99),
    slowest_sent_at_ms: [...timed].sort((a, b) => b[1] - a[1]).slice(0, Math.ceil(timed.length / 100))
      .map(([at]) => Math.round(at)),
  }));
  for (const socket of sockets) socket.close();
  process.exit(0);
})();
