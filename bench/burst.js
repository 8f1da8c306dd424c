// Connect burst on a loaded server: BASE sockets first, then, once told ("go" on stdin),
// BURST more as fast as CONC openers can, each opener waiting for its connect.
// Prints one JSON line {"phase": "ready", ...} when the base is open, and one with the
// burst's figures when it is done; then, once told ("close"), closes everything and exits.
// usage: node burst.js URL TOKENS_JSON BASE BURST CONC   (NODE_PATH at the kit's load/)
const { io } = require('socket.io-client');
const fs = require('fs');
const readline = require('readline');

const [url, tokensFile, base, burst, conc] = process.argv.slice(2);
const { users } = JSON.parse(fs.readFileSync(tokensFile));
const sockets = [];
let failures = 0;
let firstError = null;

function open(index) {
  const user = users[index % users.length];
  return new Promise((resolve) => {
    const socket = io(url, { auth: { token: user.token }, transports: ['websocket'],
      forceNew: true, reconnection: false, timeout: 20000 });
    socket.once('connect', () => { sockets.push(socket); resolve(); });
    socket.once('connect_error', (error) => {
      failures += 1; firstError = firstError || error.message; resolve();
    });
  });
}

async function openMany(count) {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Number(conc) }, async () => {
    while (next < count) { next += 1; await open(sockets.length + next); }
  }));
  return Number(process.hrtime.bigint() - started) / 1e9;
}

(async () => {
  const baseSeconds = await openMany(Number(base));
  console.log(JSON.stringify({ phase: 'ready', open: sockets.length, seconds: baseSeconds, failures }));
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const told = async (word) => { while ((await lines.next()).value?.trim() !== word); };
  await told('go');
  const before = sockets.length;
  const burstSeconds = await openMany(Number(burst));
  console.log(JSON.stringify({ phase: 'burst', opened: sockets.length - before,
    seconds: burstSeconds, failures, firstError }));
  await told('close');
  for (const socket of sockets) socket.close();
  process.exit(0);
})();
