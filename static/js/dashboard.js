// The live dashboard: analytics figures and charts, recent messages, and (admins) every node.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let socket = null;
  let nodesTimer = null;
  const messages = new Map();  // id -> message, kept at the highest version seen
  const charts = {};

  function chart(id, type, label, color) {
    charts[id] = new Chart($(id), {
      type,
      data: { labels: [], datasets: [{ label, data: [], backgroundColor: color, borderColor: color }] },
      options: { animation: false, responsive: true, aspectRatio: 1.6, plugins: { legend: { display: false } } },
    });
  }

  function updateChart(id, labels, datasets) {
    const c = charts[id];
    c.data.labels = labels;
    datasets.forEach((values, i) => {
      if (!c.data.datasets[i]) c.data.datasets[i] = { data: [] };
      c.data.datasets[i].data = values;
    });
    c.update();
    const canvas = $(id);
    canvas.dataset.updatedCount = String(Number(canvas.dataset.updatedCount) + 1);
  }

  function money(value) { return `$${Number(value || 0).toFixed(4)}`; }

  function showDashboard(d) {
    $('stat-messages-total').textContent = d.messagesTotal;
    $('stat-messages-today').textContent = d.messagesToday;
    $('stat-recipients-total').textContent = d.recipientsTotal;
    $('stat-delivered').textContent = d.delivered;
    $('stat-failed').textContent = d.failed;
    $('stat-delivery-rate').textContent = `${(100 * (d.deliveryRate || 0)).toFixed(1)}%`;
    $('stat-cost-total').textContent = money(d.costTotal);
    $('stat-in-flight').textContent = d.inFlight;
    $('stat-scheduled').textContent = `${d.scheduled} / ${d.paused}`;
    $('stat-inbound').textContent = `${d.inboundTotal} (${d.inboundToday})`;
    $('stat-unread').textContent = d.unreadNotifications ?? '–';
    // Every recipient once: the four slices add up to "Recipients".
    updateChart('chart-delivery', ['delivered', 'sent, awaiting receipt', 'failed', 'not yet sent'],
      [[d.delivered, Math.max(0, d.sent - d.delivered), d.failed,
        Math.max(0, d.recipientsTotal - d.sent - d.failed)]]);
  }

  function showAnalytics(update) {
    if (update.type === 'dashboard_stats') showDashboard(update.data);
    if (update.type === 'message_stats') {
      showMessageStatuses(update.data.messagesByStatus);
      const hours = update.data.hourly;
      updateChart('chart-hourly', hours.map((h) => h.hour.slice(11, 16)),
        [hours.map((h) => h.sent), hours.map((h) => h.delivered), hours.map((h) => h.failed)]);
    }
    if (update.type === 'usage_stats') {
      const days = update.data.daily;
      updateChart('chart-cost', days.map((d) => d.day.slice(5)), [days.map((d) => d.cost)]);
    }
  }

  function showGlobal(update) {
    const d = update.data;
    $('global-panel').hidden = false;
    const figures = [['messages', d.messagesTotal], ['delivered', d.delivered],
      ['failed', d.failed], ['cost', money(d.costTotal)], ['online users', d.onlineUsers],
      ['events in/s', d.eventsInPerSecond], ['events out/s', d.eventsOutPerSecond]];
    $('global-figures').replaceChildren(...figures.map(([label, value]) => {
      const div = document.createElement('div');
      div.className = 'figure';
      const span = document.createElement('span');
      span.textContent = label;
      const strong = document.createElement('strong');
      strong.textContent = value;
      div.append(span, strong);
      return div;
    }));
  }

  // A scheduled message says when it goes out (a paused one too, while that is ahead).
  function statusText(m) {
    if (!m.sendAt || !['SCHEDULED', 'PAUSED'].includes(m.status)) return m.status;
    const at = new Date(m.sendAt);
    return at > Date.now() ? `${m.status} for ${at.toLocaleString()}` : m.status;
  }

  // A message's recipients per status (statusCounts), each in its status's colour.
  function statusCounts(counts) {
    const list = document.createElement('span');
    list.className = 'counts';
    list.append(...Object.entries(counts || {}).map(([status, count]) => {
      const span = document.createElement('span');
      span.dataset.status = status;
      span.textContent = `${status} ${count}`;
      return span;
    }));
    return list;
  }

  // The latest RECENT messages, drawn at most once a frame however many message_update
  // events came.
  const RECENT = 20;
  let frame = 0;
  function renderMessages() {
    frame = 0;
    const rows = [...messages.values()].sort((a, b) => Number(b.id) - Number(a.id))
      .slice(0, RECENT);
    $('recent-messages').tBodies[0].replaceChildren(...rows.map((m) => {
      const tr = document.createElement('tr');
      tr.dataset.messageId = m.id;
      tr.dataset.status = m.status;
      [m.id, (m.body || '').slice(0, 40), statusText(m)]
        .forEach((text) => { tr.insertCell().textContent = text; });
      tr.insertCell().append(statusCounts(m.statusCounts));
      [m.successCount, money(m.cost)].forEach((text) => { tr.insertCell().textContent = text; });
      return tr;
    }));
  }

  // Every message of the user (everyone's for the global figures) per status, from
  // message_stats: older messages than the recent table's count too.
  function showMessageStatuses(byStatus) {
    $('message-status-counts').querySelectorAll('[data-message-status]').forEach((element) => {
      element.querySelector('strong').textContent = byStatus[element.dataset.messageStatus] ?? 0;
    });
  }

  function mergeMessage(update) {
    const id = update.messageId || update.id;
    const known = messages.get(id);
    if (known && known.version > update.version) return;
    messages.set(id, { ...known, ...update, id });
    if (!frame) frame = requestAnimationFrame(renderMessages);
    if (!known && update.body === undefined) {
      Hub.api('GET', `/api/messages/${encodeURIComponent(id)}`).then(mergeMessage).catch(() => {});
    }
  }

  async function loadMessages() {
    try {
      const page = await Hub.api('GET', `/api/messages?limit=${RECENT}`);
      page.messages.forEach(mergeMessage);
    } catch (err) {
      Hub.showError(err);
    }
  }

  async function loadNodes() {
    try {
      const stats = await Hub.api('GET', '/api/socket/stats');
      $('nodes-table').tBodies[0].replaceChildren(...stats.nodes.map((node) => {
        const tr = document.createElement('tr');
        [node.id, node.connections, node.lastHeartbeat].forEach((t) => { tr.insertCell().textContent = t; });
        return tr;
      }));
    } catch (err) {
      Hub.showError(err);
    }
  }

  function connect() {
    if (socket) socket.disconnect();
    clearInterval(nodesTimer);
    if (!Hub.tokens().access) return;
    socket = Hub.connect();
    socket.on('connect', () => {
      $('conn-state').textContent = 'connected';
      $('conn-state').dataset.state = 'connected';
      socket.emit('subscribe_analytics', () => {});
      loadMessages();
    });
    socket.on('disconnect', (reason) => {
      $('conn-state').textContent = `disconnected: ${reason}`;
      $('conn-state').dataset.state = 'disconnected';
    });
    socket.on('connect_error', (err) => {
      $('conn-state').textContent = `connect_error: ${err.message}`;
      $('conn-state').dataset.state = 'connect_error';
    });
    socket.on('session', (s) => {
      if (s.role === 'admin') {
        $('global-panel').hidden = false;
        loadNodes();
        nodesTimer = setInterval(loadNodes, 5000);
      }
    });
    socket.on('analytics_update', showAnalytics);
    socket.on('global_analytics_update', showGlobal);
    socket.on('message_update', mergeMessage);
    const renew = async () => {
      try { socket.emit('authenticate', await Hub.refresh(), () => {}); } catch (err) {
        Hub.showError(err);
      }
    };
    socket.on('auth_expiring', renew);
    socket.on('auth_expired', renew);
  }

  document.addEventListener('DOMContentLoaded', () => {
    chart('chart-hourly', 'bar', 'sent', '#2563eb');
    charts['chart-hourly'].data.datasets.push(
      { label: 'delivered', data: [], backgroundColor: '#15803d' },
      { label: 'failed', data: [], backgroundColor: '#b91c1c' });
    chart('chart-delivery', 'doughnut', 'recipients', ['#15803d', '#93c5fd', '#b91c1c', '#d1d5db']);
    chart('chart-cost', 'line', 'cost', '#7c3aed');
    Hub.onTokens(connect);
    connect();
  });
})();
