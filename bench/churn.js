// Connection churn with the official client, by CONC workers for SECONDS (with 0, every
// worker does one round: a warm-up). Every other disconnect is abrupt: the socket is reset
// without a close frame. Two rounds:
//   basic  connect with a token, one `get_rooms` ack, disconnect (what the Node peer supports)
//   full   connect with a token, `join_room`, `subscribe_analytics`, `track_message` on a
//          message the user owns (tokens file: users[].messageId), and wait for the acks and
//          the events the server pushes (`session`, `analytics_update`, `message_update`)
// A failed ack (`ok: false`), a timeout or a connect_error counts as a client error.
// usage: node churn.js URL TOKENS_JSON SECONDS CONC [basic|full]   (NODE_PATH at the kit)
const { io } = require('socket.io-client');
const fs = require('fs');

const [url, tokensFile, seconds, conc, mode = 'basic'] = process.argv.slice(2);
if (!['basic', 'full'].includes(mode)) throw new Error(`unknown mode ${mode}`);
const { users } = JSON.parse(fs.readFileSync(tokensFile));
const deadline = Date.now() + Number(seconds) * 1000;
const TIMEOUT_MS = 10000;
const PUSHED = ['session', 'analytics_update', 'message_update'];
const stats = { mode, connects: 0, disconnects: 0, abrupt: 0, errors: 0, eventsReceived: 0,
  firstErrors: [] };
let next = 0;

// The acks of a full round, in order; each must answer {ok: true}.
function fullRound(socket, pushed, user, n) {
  const calls = [['join_room', `room:churn-${n % 50}`], ['subscribe_analytics'],
    ['track_message', user.messageId]];
  return calls.reduce((previous, [event, ...args]) => previous.then(async () => {
    const answer = await socket.timeout(TIMEOUT_MS).emitWithAck(event, ...args);
    stats.eventsReceived += 1;
    if (!answer || answer.ok !== true) {
      throw new Error(`${event} answered ${JSON.stringify(answer).slice(0, 200)}`);
    }
  }), Promise.resolve()).then(() => withTimeout(Promise.all(pushed), 'pushed events'))
    .then(() => { stats.eventsReceived += PUSHED.length; });
}

async function basicRound(socket) {
  await socket.timeout(TIMEOUT_MS).emitWithAck('get_rooms');
  stats.eventsReceived += 1;
}

function withTimeout(promise, what) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout waiting for ${what}`)), TIMEOUT_MS);
  })]).finally(() => clearTimeout(timer));
}

function once(user, n) {
  const abrupt = n % 2 === 1;
  return new Promise((resolve) => {
    const socket = io(url, { auth: { token: user.token }, transports: ['websocket'],
      forceNew: true, reconnection: false, timeout: TIMEOUT_MS });
    // Listening from the start: `session` follows the connect packet at once.
    const pushed = mode === 'full'
      ? PUSHED.map((event) => new Promise((resolve) => socket.once(event, resolve))) : [];
    const fail = (why) => {
      stats.errors += 1;
      if (stats.firstErrors.length < 5) stats.firstErrors.push(String(why && why.message || why));
      socket.close();
      resolve();
    };
    socket.once('connect_error', (err) => fail(`connect_error ${err.message}`));
    socket.once('connect', () => {
      stats.connects += 1;
      (mode === 'full' ? fullRound(socket, pushed, user, n) : basicRound(socket)).then(() => {
        if (abrupt) {
          socket.io.engine.transport.ws.terminate();
          stats.abrupt += 1;
        } else {
          socket.disconnect();
        }
        stats.disconnects += 1;
        socket.close();
        resolve();
      }, fail);
    });
  });
}

async function worker() {
  do {
    const n = next++;
    await once(users[n % users.length], n);
  } while (Date.now() < deadline);
}

const started = Date.now();
Promise.all(Array.from({ length: Number(conc) }, worker)).then(() => {
  const elapsed = (Date.now() - started) / 1000;
  console.log(JSON.stringify({ ...stats, seconds: elapsed,
    churnPerSecond: +((stats.connects + stats.disconnects) / elapsed).toFixed(1) }));
  process.exit(0);
});
