// The testSocket page: every client event of the API, with acks and a live event log.
// A tracked message is followed in recipient_updates batches and drawn once a frame,
// so a 10,000-recipient message stays smooth; a reconnect resumes from the last version.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let socket = null;
  let connects = 0;
  const notifications = new Map();   // id -> notification
  let unread = 0;

  // Long lists draw only the rows in view: fixed-height rows in a scrolled box, the
  // table moved to the first of them. A row moving or changing repaints that box alone.
  const OVERSCAN = 8;

  function drawWindow({ viewport, spacer, table, rowHeight, items, fill }) {
    spacer.style.height = `${items.length * rowHeight}px`;
    const first = Math.max(0, Math.floor(viewport.scrollTop / rowHeight) - OVERSCAN);
    const shown = items.slice(first, first + Math.ceil(viewport.clientHeight / rowHeight)
      + 2 * OVERSCAN);
    table.style.transform = `translateY(${first * rowHeight}px)`;
    const body = table.tBodies[0];
    while (body.rows.length > shown.length) body.deleteRow(-1);
    while (body.rows.length < shown.length) {
      const row = body.insertRow();
      for (let i = 0; i < table.dataset.columns; i += 1) row.insertCell();
    }
    shown.forEach((item, index) => fill(body.rows[index], item));
  }

  // Only what differs is written: an unchanged row is neither laid out nor painted again.
  function setText(cell, text) {
    const value = String(text);
    if (cell.textContent !== value) cell.textContent = value;
  }

  function setData(element, key, value) {
    if (element.dataset[key] !== value) element.dataset[key] = value;
  }

  // The event log: a ring of the latest LOG_LIMIT entries, newest first; paused, it
  // shows what it held when paused.
  const LOG_LIMIT = 200;
  const PAYLOAD_CHARS = 400;
  const logRing = [];
  let logTotal = 0;
  let logFrozen = null;

  function time() { return new Date().toISOString().slice(11, 23); }

  function describe(payload) {
    if (payload === undefined) return '';
    const text = JSON.stringify(payload) ?? '';
    return text.length > PAYLOAD_CHARS ? `${text.slice(0, PAYLOAD_CHARS)}… (${text.length} characters)` : text;
  }

  function log(direction, event, payload, failed) {
    const text = describe(payload);
    logRing.push({ at: time(), direction, event, text, failed,
      search: `${event} ${text}`.toLowerCase() });
    if (logRing.length > LOG_LIMIT) logRing.shift();
    logTotal += 1;
    schedule();
  }

  function fillLogRow(row, entry) {
    const className = entry.direction + (entry.failed ? ' failed' : '');
    if (row.className !== className) row.className = className;
    setData(row, 'event', entry.event);
    [entry.at, entry.direction === 'out' ? '→' : '←', entry.event, entry.text].forEach((text, i) => {
      setText(row.cells[i], text);
    });
    if (row.cells[3].title !== entry.text) row.cells[3].title = entry.text;
  }

  function drawLog() {
    const needle = $('log-filter').value.trim().toLowerCase();
    const held = logFrozen || { entries: logRing.slice().reverse(), total: logTotal };
    const items = needle ? held.entries.filter((e) => e.search.includes(needle)) : held.entries;
    drawWindow({ viewport: $('log-viewport'), spacer: $('log-spacer'), table: $('event-log'),
      rowHeight: 22, items, fill: fillLogRow });
    const hidden = held.total - held.entries.length;
    const note = $('log-hidden');
    setData(note, 'hidden', String(hidden));
    setData(note, 'kept', String(held.entries.length));
    setText(note, `${hidden > 0 ? `${hidden} older events hidden` : ''}${logFrozen ? ' (paused)' : ''}`);
  }

  // The tracked message: every recipient's latest state, counts per status, and the
  // version to resume from after a reconnect. Only the rows in view are in the DOM.
  // The statuses are the server's own, as the page was rendered with them (this script
  // runs after the page's body).
  const STATUSES = [...document.querySelectorAll('#recipient-counts [data-count-status]')]
    .map((element) => element.dataset.countStatus);
  const tracking = {
    id: '', version: 0, confirmed: false, seen: 0,
    recipients: new Map(), order: [], sorted: true, counts: {}, filtered: null,
  };
  let messageVersion = 0;

  function resetTracking(id) {
    Object.assign(tracking, { id, version: 0, confirmed: false, seen: 0, recipients: new Map(),
      order: [], sorted: true, filtered: null });
    STATUSES.forEach((status) => { tracking.counts[status] = 0; });
    messageVersion = 0;
    $('message-summary').textContent = '';
    $('message-summary').dataset.status = '';
    $('recipients-viewport').scrollTop = 0;
    schedule();
  }

  function applyRecipient(update) {
    const known = tracking.recipients.get(update.recipientId);
    if (known && known.version >= update.version) return;
    if (known) {
      tracking.counts[known.status] -= 1;
    } else {
      const last = tracking.order[tracking.order.length - 1];
      if (last !== undefined && Number(last) > Number(update.recipientId)) tracking.sorted = false;
      tracking.order.push(update.recipientId);
    }
    tracking.counts[update.status] = (tracking.counts[update.status] || 0) + 1;
    tracking.recipients.set(update.recipientId, update);
    if (!known || known.status !== update.status) tracking.filtered = null;
    schedule();
  }

  function applyBatch(batch) {
    if (batch.messageId !== tracking.id) return;
    batch.updates.forEach(applyRecipient);
    // A version counts only once the snapshot it follows is complete (the ack came).
    tracking.seen = Math.max(tracking.seen, batch.version);
    if (tracking.confirmed) tracking.version = Math.max(tracking.version, batch.version);
  }

  function visibleIds() {
    if (!tracking.sorted) {
      tracking.order.sort((a, b) => Number(a) - Number(b));
      tracking.sorted = true;
      tracking.filtered = null;
    }
    const status = $('recipient-filter').value;
    if (!status) return tracking.order;
    if (!tracking.filtered) {
      tracking.filtered = tracking.order.filter((id) => tracking.recipients.get(id).status === status);
    }
    return tracking.filtered;
  }

  // The provider's own words (e.g. "undelivered · 30003") and the hub's ("opted_out: ...");
  // a cell too narrow for them shows the whole on hover.
  function providerWords(update) {
    return [update.providerStatus, update.providerErrorCode].filter(Boolean).join(' · ');
  }

  function hubWords(update) {
    return [update.errorCode, update.errorMessage].filter(Boolean).join(': ');
  }

  function setTitled(cell, text) {
    setText(cell, text);
    if (cell.title !== text) cell.title = text;
  }

  function fillRecipientRow(row, id) {
    const update = tracking.recipients.get(id);
    setData(row, 'recipientId', id);
    setData(row, 'status', update.status);
    const cells = row.cells;
    setText(cells[0], update.phone);
    setText(cells[1], update.status);
    setTitled(cells[2], providerWords(update));
    setTitled(cells[3], hubWords(update));
    setText(cells[4], update.version);
  }

  function drawRecipients() {
    const ids = visibleIds();
    drawWindow({ viewport: $('recipients-viewport'), spacer: $('recipients-spacer'),
      table: $('recipients-table'), rowHeight: 26, items: ids, fill: fillRecipientRow });
    STATUSES.forEach((status) => {
      setText($('recipient-counts').querySelector(`[data-count-status="${status}"] strong`),
        tracking.counts[status] || 0);
    });
    setText($('recipient-shown'), ids.length === tracking.order.length
      ? `${ids.length} recipients` : `${ids.length} of ${tracking.order.length} recipients`);
  }

  // Everything on screen is drawn at most once a frame, however many events arrived;
  // the log, for reading, at most every LOG_DRAW_MS.
  const LOG_DRAW_MS = 250;
  let frame = 0;
  let logDrawnAt = 0;
  let logTimer = 0;
  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function draw(now) {
    frame = 0;
    drawRecipients();
    if (now - logDrawnAt >= LOG_DRAW_MS) {
      logDrawnAt = now;
      drawLog();
    } else if (!logTimer) {
      logTimer = setTimeout(() => { logTimer = 0; schedule(); }, LOG_DRAW_MS);
    }
  }

  function setState(state, detail) {
    const el = $('conn-state');
    el.dataset.state = state;
    el.textContent = detail ? `${state}: ${detail}` : state;
  }

  // Emit with an ack; show the answer, in red when it is a failure.
  function call(event, ...args) {
    if (!socket || !socket.connected) {
      log('out', event, { error: 'not connected' }, true);
      return Promise.resolve(null);
    }
    return new Promise((resolve) => {
      socket.timeout(5000).emit(event, ...args, (err, answer) => {
        if (err) {
          log('in', `${event} (ack)`, { error: 'no acknowledgement within 5 s' }, true);
          resolve(null);
          return;
        }
        const failed = answer && answer.ok === false;
        log('in', `${event} (ack)`, answer, failed);
        resolve(answer);
      });
    });
  }

  function renderRooms(rooms) {
    const list = $('rooms-list');
    list.replaceChildren(...rooms.map((room) => {
      const li = document.createElement('li');
      li.textContent = room;
      return li;
    }));
  }

  function renderMessage(update) {
    if (update.messageId !== tracking.id || update.version < messageVersion) return;
    messageVersion = update.version;
    const summary = $('message-summary');
    summary.dataset.status = update.status;
    const counts = Object.entries(update.statusCounts || {})
      .map(([status, count]) => `${status} ${count}`).join(', ');
    summary.textContent = `message ${update.messageId}: ${update.status} · sent ${update.successCount}`
      + ` · failed ${update.failedCount} · delivered ${update.deliveredCount ?? 0}`
      + ` · cost $${Number(update.cost).toFixed(4)}${counts ? ` · ${counts}` : ''}`;
    summary.title = summary.textContent;
  }

  // Newest first; a repeat of an id already shown (a reconnect's replay) is not shown twice.
  function renderInbound(message) {
    const body = $('inbound-table').tBodies[0];
    if (body.querySelector(`tr[data-inbound-id="${CSS.escape(message.id)}"]`)) return;
    const row = body.insertRow(0);
    row.dataset.inboundId = message.id;
    row.dataset.keyword = message.keyword || '';
    [message.receivedAt.slice(11, 19), message.fromValid ? message.from : `${message.from} (unparseable)`,
      message.body ?? '(erased)', message.keyword || ''].forEach((text) => {
      row.insertCell().textContent = text;
    });
    $('inbound-badge').textContent = body.rows.length;
    $('inbound-badge').dataset.count = body.rows.length;
  }

  function setUnread(count) {
    unread = Math.max(0, count);
    $('unread-badge').textContent = unread;
    $('unread-badge').dataset.count = unread;
  }

  function renderNotifications() {
    const items = [...notifications.values()].sort((a, b) => Number(b.id) - Number(a.id));
    $('notifications-list').replaceChildren(...items.map((n) => {
      const li = document.createElement('li');
      li.dataset.notificationId = n.id;
      li.dataset.read = String(n.read);
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = `[${n.type}] ${n.title}: ${n.message}`;
      li.append(text);
      if (!n.read) {
        const button = document.createElement('button');
        button.className = 'secondary mark-read-btn';
        button.textContent = 'mark read';
        button.addEventListener('click', async () => {
          const answer = await call('mark_notification_read', n.id);
          if (answer && answer.ok) markRead(n.id, answer.unreadCount);
        });
        li.append(button);
      }
      return li;
    }));
  }

  function markRead(id, unreadCount) {
    const n = notifications.get(id);
    if (n) n.read = true;
    if (unreadCount !== undefined && unreadCount !== null) setUnread(unreadCount);
    renderNotifications();
  }

  async function loadNotifications() {
    const answer = await call('get_notifications', { limit: 50 });
    if (!answer || !answer.ok) return;
    answer.notifications.forEach((n) => notifications.set(n.id, n));
    setUnread(answer.unreadCount);
    renderNotifications();
  }

  function renderAnalytics(kind, update) {
    $('analytics-output').textContent = `${kind} ${update.type}\n${JSON.stringify(update.data, null, 2)}`;
    if (update.type !== 'dashboard_stats') return;
    const d = update.data;
    const figures = [['messages', d.messagesTotal], ['sent', d.sent], ['delivered', d.delivered],
      ['failed', d.failed], ['rate', `${Math.round((d.deliveryRate || 0) * 100)}%`],
      ['cost', `$${Number(d.costTotal || 0).toFixed(4)}`]];
    $('analytics-figures').replaceChildren(...figures.map(([label, value]) => {
      const div = document.createElement('div');
      div.className = 'figure';
      div.dataset.figure = label;
      const span = document.createElement('span');
      span.textContent = kind === 'global' ? `all ${label}` : label;
      const strong = document.createElement('strong');
      strong.textContent = value;
      div.append(span, strong);
      return div;
    }));
  }

  // One phone per line (or separated by commas or semicolons): "+1 201 555 0123" is one.
  // The schedule is entered in the browser's local time and sent with its offset (as UTC).
  function enteredMessage() {
    const message = { body: $('send-body').value,
      recipients: $('send-phones').value.split(/[\r\n,;]+/).map((p) => p.trim()).filter(Boolean) };
    if ($('send-at').value) message.sendAt = new Date($('send-at').value).toISOString();
    if ($('quiet-hours').checked) message.quietHours = true;
    return message;
  }

  // Pause, resume, cancel or retry the message in the id field; its message_update follows.
  async function controlMessage(action) {
    const path = `/api/messages/${encodeURIComponent($('message-id').value.trim())}/${action}`;
    log('out', `POST ${path}`);
    try {
      log('in', `POST ${path} (200)`, await Hub.api('POST', path));
    } catch (err) {
      log('in', `POST ${path}`, { error: err.message, details: err.details }, true);
    }
  }

  // What the message would cost, and which characters make it UCS-2 (they double the bill).
  function renderPreview(preview) {
    $('preview').hidden = false;
    $('preview-summary').textContent = `${preview.recipientCount} recipients`
      + ` (${preview.duplicatesRemoved} duplicates removed, ${preview.suppressed} suppressed,`
      + ` ${preview.invalid.length} invalid) · ${preview.encoding} · ${preview.segments}`
      + ` segment${preview.segments === 1 ? '' : 's'} · cost $${preview.cost.toFixed(4)}`;
    $('preview-ucs2').textContent = preview.nonGsmCharacters.length
      ? `UCS-2 because of: ${preview.nonGsmCharacters.map((ch) => `${ch} (U+${ch.codePointAt(0)
        .toString(16).toUpperCase().padStart(4, '0')})`).join(' ')}`
      : 'GSM-7: every character fits';
    $('preview-invalid').replaceChildren(...preview.invalid.map((bad) => {
      const li = document.createElement('li');
      li.textContent = `#${bad.index} ${bad.value}: ${bad.reason}`;
      return li;
    }));
    $('preview-countries').tBodies[0].replaceChildren(...preview.byCountry.map((c) => {
      const row = document.createElement('tr');
      row.dataset.country = c.country;
      [c.country, c.recipients, c.pricePerSegment, `$${c.cost.toFixed(4)}`].forEach((text) => {
        row.insertCell().textContent = text;
      });
      return row;
    }));
  }

  // report.csv needs the bearer token, so it is fetched, then saved from memory.
  async function downloadReport() {
    const id = $('message-id').value.trim();
    const path = `/api/messages/${encodeURIComponent(id)}/report.csv`;
    log('out', `GET ${path}`);
    const response = await fetch(path, { headers: { Authorization: `Bearer ${Hub.tokens().access}` } });
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      log('in', `GET ${path} (${response.status})`, data, true);
      return;
    }
    const link = document.createElement('a');
    link.href = URL.createObjectURL(await response.blob());
    link.download = `message-${id}-report.csv`;
    link.click();
    URL.revokeObjectURL(link.href);
    log('in', `GET ${path} (200)`, { saved: link.download });
  }

  async function renewToken() {
    try {
      const token = await Hub.refresh();
      log('out', 'POST /api/auth/refresh', { ok: true });
      await call('authenticate', token);
    } catch (err) {
      log('in', 'token renewal', { error: err.message }, true);
    }
  }

  // Batched tracking; after a reconnect, only what changed since the last version held.
  async function requestTracking() {
    const request = { messageId: tracking.id, batch: true };
    if (tracking.version) request.sinceVersion = tracking.version;
    tracking.confirmed = false;
    const answer = await call('track_message', request);
    if (answer && answer.ok && answer.messageId === tracking.id) {
      tracking.confirmed = true;
      tracking.version = Math.max(tracking.version, answer.version, tracking.seen);
    }
  }

  async function track(id) {
    resetTracking(id);
    $('message-id').value = id;
    await requestTracking();
  }

  function connect() {
    if (socket) socket.disconnect();
    connects = 0;
    if (!Hub.tokens().access) { setState('disconnected', 'log in first'); return; }
    setState('connecting');
    socket = Hub.connect();
    socket.onAny((event, ...args) => log('in', event, args.length <= 1 ? args[0] : args,
      event === 'error'));
    socket.onAnyOutgoing((event, ...args) => {
      const shown = args.filter((a) => typeof a !== 'function');
      log('out', event, shown.length <= 1 ? shown[0] : shown);
    });
    socket.on('connect', () => {
      connects += 1;
      $('conn-state').dataset.connects = connects;
      setState('connected', socket.id);
      loadNotifications();
      if (tracking.id) requestTracking();
    });
    socket.on('disconnect', (reason) => setState('disconnected', reason));
    socket.on('connect_error', (err) => {
      const code = err.data && err.data.code ? ` (${err.data.code})` : '';
      setState('connect_error', `${err.message}${code}`);
      log('in', 'connect_error', { message: err.message, data: err.data }, true);
    });
    socket.on('session', (s) => {
      $('session-info').textContent = `user ${s.userId} · role ${s.role} · token expires ${s.expiresAt}`;
    });
    socket.on('ping', (data) => {
      socket.emit('pong', { timestamp: data.timestamp }, (answer) => {
        if (answer && answer.rttMs !== null && answer.rttMs !== undefined) {
          $('rtt').textContent = `${answer.rttMs.toFixed(1)} ms`;
        }
      });
    });
    socket.on('auth_expiring', renewToken);
    socket.on('auth_expired', renewToken);
    socket.on('message_update', renderMessage);
    socket.on('recipient_updates', applyBatch);
    socket.on('notification', (n) => {
      if (!notifications.has(n.id)) {
        notifications.set(n.id, n);
        setUnread(n.unreadCount === null || n.unreadCount === undefined ? unread + 1 : n.unreadCount);
      }
      renderNotifications();
    });
    socket.on('notification_read', (data) => {
      if (data.all) notifications.forEach((n) => { n.read = true; });
      markRead(data.id, data.unreadCount);
    });
    socket.on('inbound_message', renderInbound);
    socket.on('analytics_update', (u) => renderAnalytics('user', u));
    socket.on('global_analytics_update', (u) => renderAnalytics('global', u));
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('connect-btn').addEventListener('click', connect);
    $('disconnect-btn').addEventListener('click', () => { if (socket) socket.disconnect(); });
    $('measure-btn').addEventListener('click', () => {
      const started = performance.now();
      call('get_rooms').then((rooms) => {
        $('ack-rtt').textContent = `${(performance.now() - started).toFixed(1)} ms`;
        if (Array.isArray(rooms)) renderRooms(rooms);
      });
    });
    $('get-rooms-btn').addEventListener('click', async () => {
      const rooms = await call('get_rooms');
      if (Array.isArray(rooms)) renderRooms(rooms);
    });
    $('join-btn').addEventListener('click', async () => {
      await call('join_room', $('room-input').value.trim());
      const rooms = await call('get_rooms');
      if (Array.isArray(rooms)) renderRooms(rooms);
    });
    $('leave-btn').addEventListener('click', async () => {
      await call('leave_room', $('room-input').value.trim());
      const rooms = await call('get_rooms');
      if (Array.isArray(rooms)) renderRooms(rooms);
    });
    $('subscribe-analytics-btn').addEventListener('click', () => call('subscribe_analytics'));
    $('unsubscribe-analytics-btn').addEventListener('click', () => call('unsubscribe_analytics'));
    $('track-btn').addEventListener('click', () => track($('message-id').value.trim()));
    $('untrack-btn').addEventListener('click', () => call('untrack_message', $('message-id').value.trim()));
    $('get-notifications-btn').addEventListener('click', loadNotifications);
    $('mark-all-read-btn').addEventListener('click', async () => {
      const answer = await call('mark_all_notifications_read');
      if (answer && answer.ok) {
        notifications.forEach((n) => { n.read = true; });
        setUnread(0);
        renderNotifications();
      }
    });
    $('refresh-token-btn').addEventListener('click', renewToken);
    $('authenticate-btn').addEventListener('click', () => call('authenticate', $('new-token').value.trim()));
    $('preview-btn').addEventListener('click', async () => {
      const message = enteredMessage();
      log('out', 'POST /api/messages/preview', message);
      try {
        const preview = await Hub.api('POST', '/api/messages/preview', message);
        log('in', 'POST /api/messages/preview (200)', preview);
        renderPreview(preview);
      } catch (err) {
        log('in', 'POST /api/messages/preview', { error: err.message, details: err.details }, true);
      }
    });
    $('report-btn').addEventListener('click', downloadReport);
    ['pause-btn', 'resume-btn', 'cancel-btn', 'retry-btn'].forEach((id) => {
      $(id).addEventListener('click', () => controlMessage($(id).dataset.action));
    });
    $('send-btn').addEventListener('click', async () => {
      const entered = enteredMessage();
      log('out', 'POST /api/messages', entered);
      try {
        const message = await Hub.api('POST', '/api/messages', entered);
        log('in', 'POST /api/messages (202)', message);
        await track(message.id);
      } catch (err) {
        log('in', 'POST /api/messages', { error: err.message, details: err.details }, true);
      }
    });
    $('inject-inbound-btn').addEventListener('click', async () => {
      const inbound = { from: $('inbound-from').value.trim(), body: $('inbound-body').value };
      log('out', 'POST /api/simulator/inbound', inbound);
      try {
        log('in', 'POST /api/simulator/inbound (201)', await Hub.api('POST', '/api/simulator/inbound', inbound));
      } catch (err) {
        log('in', 'POST /api/simulator/inbound', { error: err.message, details: err.details }, true);
      }
    });
    $('log-filter').addEventListener('input', schedule);
    $('clear-log-btn').addEventListener('click', () => {
      logRing.length = 0;
      logTotal = 0;
      if (logFrozen) logFrozen = { entries: [], total: 0 };
      schedule();
    });
    $('pause-log-btn').addEventListener('click', () => {
      logFrozen = logFrozen ? null : { entries: logRing.slice().reverse(), total: logTotal };
      $('pause-log-btn').textContent = logFrozen ? 'Resume' : 'Pause';
      $('pause-log-btn').setAttribute('aria-pressed', String(Boolean(logFrozen)));
      schedule();
    });
    $('log-viewport').addEventListener('scroll', schedule, { passive: true });
    $('recipient-filter').addEventListener('change', () => {
      tracking.filtered = null;
      $('recipients-viewport').scrollTop = 0;
      schedule();
    });
    $('recipients-viewport').addEventListener('scroll', schedule, { passive: true });
    resetTracking('');
    Hub.onTokens((t) => { if (!t.access && socket) socket.disconnect(); });
  });
})();
