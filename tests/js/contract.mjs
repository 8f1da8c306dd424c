// Follows docs/API.md with the official client and prints one JSON line of what it saw.
// usage: node contract.mjs BASE_URL USER_TOKEN USER_ID ADMIN_TOKEN
import { io } from 'socket.io-client';

const [base, token, userId, adminToken] = process.argv.slice(2);
const result = {};
const withTimeout = (promise, ms, what) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms)),
]);
const once = (socket, event) => new Promise((resolve) => socket.once(event, resolve));

async function refused(auth) {
  const socket = io(base, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
  const err = await withTimeout(once(socket, 'connect_error'), 5000, 'connect_error');
  socket.close();
  return { message: err.message, code: err.data && err.data.code };
}

async function main() {
  result.noToken = await refused({});
  result.badToken = await refused({ token: 'nope' });

  const socket = io(base, { auth: { token }, transports: ['websocket'], reconnection: false });
  const session = once(socket, 'session');
  await withTimeout(once(socket, 'connect'), 5000, 'connect');
  result.session = await withTimeout(session, 5000, 'session');
  result.rooms = await socket.timeout(5000).emitWithAck('get_rooms');
  result.join = await socket.timeout(5000).emitWithAck('join_room', 'room:js');
  result.forbidden = await socket.timeout(5000).emitWithAck('join_room', 'admins');
  const errorEvent = once(socket, 'error');
  socket.emit('leave_room', `user:${userId}`);
  result.errorEvent = await withTimeout(errorEvent, 5000, 'error event');

  const note = once(socket, 'notification');
  const response = await fetch(`${base}/api/socket/notify/${userId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ title: 'from js', message: 'hello' }),
  });
  result.notifyStatus = response.status;
  result.notification = await withTimeout(note, 5000, 'notification');
  result.markRead = await socket.timeout(5000).emitWithAck('mark_notification_read',
    result.notification.id);

  const ping = once(socket, 'ping');
  await fetch(`${base}/api/socket/ping`, {
    method: 'POST', headers: { authorization: `Bearer ${adminToken}` },
  });
  const { timestamp } = await withTimeout(ping, 5000, 'ping');
  result.pong = await socket.timeout(5000).emitWithAck('pong', { timestamp });
  socket.close();
}

main()
  .then(() => { console.log(JSON.stringify(result)); process.exit(0); })
  .catch((err) => { console.log(JSON.stringify({ failed: String(err), ...result })); process.exit(1); });
