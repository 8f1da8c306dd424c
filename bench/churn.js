// Connection churn with the official client: connect, authenticate, one ack, disconnect
// (every other one abruptly, without a close frame), by CONC workers for SECONDS.
// usage: node churn.js URL TOKENS_JSON SECONDS CONC   (run with NODE_PATH pointing at the kit)
const { io } = require('socket.io-client');
const fs = require('fs');

const [url, tokensFile, seconds, conc] = process.argv.slice(2);
const { users } = JSON.parse(fs.readFileSync(tokensFile));
const deadline = Date.now() + Number(seconds) * 1000;
const stats = { connects: 0, disconnects: 0, abrupt: 0, errors: 0, firstErrors: [] };
let next = 0;

function once(user, abrupt) {
  return new Promise((resolve) => {
    const socket = io(url, { auth: { token: user.token }, transports: ['websocket'],
      forceNew: true, reconnection: false, timeout: 10000 });
    const fail = (why) => {
      stats.errors += 1;
      if (stats.firstErrors.length < 5) stats.firstErrors.push(String(why));
      socket.close();
      resolve();
    };
    socket.once('connect_error', (err) => fail(`connect_error ${err.message}`));
    socket.once('connect', () => {
      stats.connects += 1;
      socket.timeout(10000).emit('get_rooms', (err) => {
        if (err) { fail('ack timeout'); return; }
        if (abrupt) {
          socket.io.engine.transport.ws.terminate();
          stats.abrupt += 1;
        } else {
          socket.disconnect();
        }
        stats.disconnects += 1;
        socket.close();
        resolve();
      });
    });
  });
}

async function worker() {
  while (Date.now() < deadline) {
    const n = next++;
    await once(users[n % users.length], n % 2 === 1);
  }
}

const started = Date.now();
Promise.all(Array.from({ length: Number(conc) }, worker)).then(() => {
  const elapsed = (Date.now() - started) / 1000;
  console.log(JSON.stringify({ ...stats, seconds: elapsed,
    churnPerSecond: +((stats.connects + stats.disconnects) / elapsed).toFixed(1) }));
  process.exit(0);
});
