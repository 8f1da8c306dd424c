// The testSocket page: every client event of the API, with acks and a live event log.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let socket = null;
  const recipients = new Map();      // recipientId -> latest recipient_update
  let messageVersion = 0;
  const notifications = new Map();   // id -> notification
  let unread = 0;
  const LOG_LIMIT = 500;

  function time() { return new Date().toISOString().slice(11, 23); }

  function log(direction, event, payload, failed) {
    const body = $('event-log').tBodies[0];
    const row = body.insertRow(0);
    row.className = direction + (failed ? ' failed' : '');
    row.dataset.event = event;
    [time(), direction === 'out' ? '→' : '←', event,
      payload === undefined ? '' : JSON.stringify(payload)].forEach((text) => {
      row.insertCell().textContent = text;
    });
    applyFilter(row);
    while (body.rows.length > LOG_LIMIT) body.deleteRow(-1);
  }

  function applyFilter(row) {
    const needle = $('log-filter').value.trim().toLowerCase();
    row.hidden = needle !== '' && !row.textContent.toLowerCase().includes(needle);
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

  function renderRecipient(update) {
    const known = recipients.get(update.recipientId);
    if (known && known.version >= update.version) return;
    recipients.set(update.recipientId, update);
    const body = $('recipients-table').tBodies[0];
    let row = body.querySelector(`tr[data-recipient-id="${CSS.escape(update.recipientId)}"]`);
    if (!row) {
      row = body.insertRow();
      row.dataset.recipientId = update.recipientId;
      for (let i = 0; i < 4; i += 1) row.insertCell();
    }
    row.dataset.status = update.status;
    const cells = row.cells;
    cells[0].textContent = update.phone;
    cells[1].textContent = update.status;
    cells[2].textContent = update.errorMessage || '';
    cells[3].textContent = update.version;
  }

  function renderMessage(update) {
    if (update.messageId !== $('message-id').value.trim() || update.version < messageVersion) return;
    messageVersion = update.version;
    const summary = $('message-summary');
    summary.dataset.status = update.status;
    summary.textContent = `message ${update.messageId}: ${update.status} · sent ${update.successCount}`
      + ` · failed ${update.failedCount} · delivered ${update.deliveredCount ?? 0}`
      + ` · cost $${Number(update.cost).toFixed(4)}`;
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
  function enteredMessage() {
    return { body: $('send-body').value,
      recipients: $('send-phones').value.split(/[\r\n,;]+/).map((p) => p.trim()).filter(Boolean) };
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

  async function track(id) {
    recipients.clear();
    messageVersion = 0;
    $('recipients-table').tBodies[0].replaceChildren();
    $('message-summary').textContent = '';
    $('message-id').value = id;
    await call('track_message', id);
  }

  function connect() {
    if (socket) socket.disconnect();
    if (!Hub.tokens().access) { setState('disconnected', 'log in first'); return; }
    setState('connecting');
    socket = Hub.connect();
    socket.onAny((event, ...args) => log('in', event, args.length <= 1 ? args[0] : args,
      event === 'error'));
    socket.onAnyOutgoing((event, ...args) => {
      const shown = args.filter((a) => typeof a !== 'function');
      log('out', event, shown.length <= 1 ? shown[0] : shown);
    });
    socket.on('connect', () => { setState('connected', socket.id); loadNotifications(); });
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
    socket.on('recipient_update', (update) => {
      if (update.messageId === $('message-id').value.trim()) renderRecipient(update);
    });
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
    $('log-filter').addEventListener('input', () => {
      [...$('event-log').tBodies[0].rows].forEach(applyFilter);
    });
    $('clear-log-btn').addEventListener('click', () => $('event-log').tBodies[0].replaceChildren());
    Hub.onTokens((t) => { if (!t.access && socket) socket.disconnect(); });
  });
})();
