// The benchmark kit's Node socket.io peer (shared/bench/node-peer/server.js), kept here so
// the protocol tests compare the hub with it wherever the repository is cloned.
// Reference peer: the seed's socket layer in idiomatic Node (socket.io 4.8), in memory.
const http = require('http');
const { Server } = require('socket.io');
const jwt = require('jsonwebtoken');
const SECRET = process.env.JWT_SECRET_KEY || 'dev';
const PORT = +(process.env.PORT || 7101);
let nextId = 1;

function auth(req) {
  const h = req.headers.authorization || '';
  try { return jwt.verify(h.replace(/^Bearer /, ''), SECRET, { algorithms: ['HS256'] }); } catch { return null; }
}
function body(req) {
  return new Promise((res) => { let b = ''; req.on('data', (c) => (b += c)); req.on('end', () => { try { res(JSON.parse(b || '{}')); } catch { res(null); } }); });
}
function send(res, code, obj) { const s = JSON.stringify(obj); res.writeHead(code, { 'content-type': 'application/json' }); res.end(s); }

const server = http.createServer(async (req, res) => {
  const claims = auth(req);
  if (!claims) return send(res, 401, { error: { code: 'unauthenticated', message: 'Authentication required' } });
  const admin = claims.role === 'admin';
  let m;
  if (req.method === 'POST' && req.url === '/api/socket/broadcast') {
    if (!admin) return send(res, 403, { error: { code: 'forbidden', message: 'Admin only' } });
    const b = await body(req);
    const n = { id: String(nextId++), type: b.type || 'system', title: b.title, message: b.message, data: b.data ?? null, timestamp: new Date().toISOString(), read: false };
    io.emit('notification', n);
    return send(res, 201, { notification: n, recipients: io.engine.clientsCount });
  }
  if (req.method === 'POST' && (m = req.url.match(/^\/api\/socket\/notify\/([^/]+)$/))) {
    if (!admin) return send(res, 403, { error: { code: 'forbidden', message: 'Admin only' } });
    const b = await body(req);
    const n = { id: String(nextId++), type: b.type || 'system', title: b.title, message: b.message, data: b.data ?? null, timestamp: new Date().toISOString(), read: false };
    const room = 'user:' + m[1];
    io.to(room).emit('notification', n);
    return send(res, 201, { notification: n, delivered: io.sockets.adapter.rooms.get(room)?.size || 0 });
  }
  if (req.method === 'GET' && req.url === '/api/socket/online-count') {
    let c = 0; for (const r of io.sockets.adapter.rooms.keys()) if (r.startsWith('user:')) c++;
    return send(res, 200, { count: c });
  }
  send(res, 404, { error: { code: 'not_found', message: 'Not found' } });
});

const io = new Server(server, { serveClient: false, cors: { origin: false } });
io.use((socket, next) => {
  try { socket.data.user = jwt.verify(socket.handshake.auth?.token, SECRET, { algorithms: ['HS256'] }); next(); }
  catch (e) { const err = new Error(e.name === 'TokenExpiredError' ? 'Token expired' : 'Invalid token'); next(err); }
});
io.on('connection', (socket) => {
  socket.join('user:' + socket.data.user.sub);
  socket.on('get_rooms', (ack) => typeof ack === 'function' && ack([...socket.rooms].filter((r) => r !== socket.id)));
  socket.on('pong', () => {});
});
server.listen(PORT, '127.0.0.1', () => console.log('node peer on', PORT));
