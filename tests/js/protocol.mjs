// What Node clients see of a Socket.IO server's protocol errors; prints one JSON line.
// usage: node protocol.mjs BASE_URL
// - namespace: the official client's connect_error for a namespace the server does not serve,
//   over each transport;
// - keepAlive: a Node keep-alive agent making REST calls and polls, every other one asking for
//   `Connection: close`; a server that closes such a connection without saying so lets the agent
//   reuse a dead socket, and the next request fails (ECONNRESET).
import http from 'node:http';
import { io } from 'socket.io-client';

const [base] = process.argv.slice(2);
const ROUNDS = 100;
const withTimeout = (promise, ms, what) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms)),
]);

async function namespaceRefusal(transports) {
  const socket = io(`${base}/random`, { transports, reconnection: false, forceNew: true });
  const err = await withTimeout(new Promise((resolve) => socket.once('connect_error', resolve)),
    5000, 'connect_error');
  socket.close();
  return { message: err.message, code: (err.data && err.data.code) || null };
}

function request(agent, path, headers) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const req = http.request({ hostname, port, path, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(null));
    });
    req.on('error', (err) => resolve(err.code || String(err)));
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function keepAlive() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const errors = [];
  for (let i = 0; i < ROUNDS; i += 1) {
    const headers = i % 2 ? { connection: 'close' } : {};
    for (const path of ['/api/socket/online-count', '/socket.io/?EIO=4&transport=polling']) {
      const error = await request(agent, path, headers);
      if (error) errors.push(error);
    }
  }
  agent.destroy();
  return { requests: 2 * ROUNDS, errors };
}

async function main() {
  return {
    namespace: {
      websocket: await namespaceRefusal(['websocket']),
      polling: await namespaceRefusal(['polling']),
    },
    keepAlive: await keepAlive(),
  };
}

main()
  .then((result) => { console.log(JSON.stringify(result)); process.exit(0); })
  .catch((err) => { console.log(JSON.stringify({ failed: String(err) })); process.exit(1); });
