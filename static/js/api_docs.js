// The API page: Swagger UI on /api/openapi.json, signed in with the page's token,
// and the Socket.IO events rendered from /api/asyncapi.json.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  function element(tag, attributes, ...children) {
    const node = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([name, value]) => {
      if (name === 'text') node.textContent = value;
      else node.setAttribute(name, value);
    });
    children.filter((child) => child != null).forEach((child) => node.append(child));
    return node;
  }

  // REST: Swagger UI, using the access token that hub_client.js keeps for every page.
  function startSwagger() {
    const container = $('swagger-ui');
    const ui = SwaggerUIBundle({
      url: container.dataset.url,
      domNode: container,
      validatorUrl: null,          // the default sends the document to an outside validator
      deepLinking: true,
      docExpansion: 'list',
      defaultModelsExpandDepth: 0,
      displayRequestDuration: true,
      onComplete: () => useToken(Hub.tokens()),
    });
    function useToken({ access }) {
      if (access) ui.preauthorizeApiKey('bearer', access);
      else if (ui.authSelectors.authorized().size) ui.authActions.logout(['bearer']);
    }
    Hub.onTokens(useToken);
  }

  // Socket.IO: each AsyncAPI operation as an expandable entry with its payload and ack.
  function resolve(doc, node) {
    let current = node;
    while (current && current.$ref) {
      current = current.$ref.slice(2).split('/')
        .reduce((parent, key) => parent[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
    }
    return current;
  }

  function refName(node) {
    return node && node.$ref ? node.$ref.split('/').pop() : null;
  }

  // anyOf [X, null] (a nullable nested shape) is shown as X, nullable.
  function unwrapNullable(doc, schema) {
    const options = schema.anyOf || [];
    const real = options.filter((option) => option.type !== 'null');
    if (options.length === 2 && real.length === 1) {
      return { schema: real[0], nullable: true };
    }
    return { schema, nullable: false };
  }

  function typeLabel(doc, raw) {
    const { schema, nullable } = unwrapNullable(doc, raw);
    const named = refName(schema);
    const resolved = resolve(doc, schema) || {};
    let label;
    if (resolved.oneOf) {
      label = resolved.oneOf.map((option) => refName(option) || typeLabel(doc, option)).join(' | ');
    } else if (named) {
      label = named;
    } else if (resolved.type === 'array' || (Array.isArray(resolved.type)
      && resolved.type.includes('array'))) {
      label = `${typeLabel(doc, resolved.items || {})}[]`;
    } else if (Array.isArray(resolved.type)) {
      label = resolved.type.join(' | ');
    } else {
      label = resolved.type || 'any JSON';
    }
    if (resolved.enum) label += `: ${resolved.enum.map((value) => JSON.stringify(value)).join(' | ')}`;
    return nullable ? `${label} | null` : label;
  }

  // One row per property, nested objects and arrays of objects flattened with a path.
  function propertyRows(doc, raw, prefix, depth, rows) {
    const schema = resolve(doc, unwrapNullable(doc, raw).schema) || {};
    const target = schema.type === 'array' ? resolve(doc, schema.items) || {} : schema;
    const required = new Set(target.required || []);
    Object.entries(target.properties || {}).forEach(([name, property]) => {
      const path = `${prefix}${schema.type === 'array' ? '[]' : ''}${prefix ? '.' : ''}${name}`;
      const resolved = resolve(doc, unwrapNullable(doc, property).schema) || {};
      rows.push(element('tr', { 'data-property': path },
        element('td', {}, element('code', { text: path })),
        element('td', { text: typeLabel(doc, property) }),
        element('td', { text: required.has(name) ? 'required' : 'optional' }),
        element('td', { text: property.description || resolved.description || '' })));
      const nested = resolved.type === 'array' ? resolve(doc, resolved.items) || {} : resolved;
      if (nested.properties && depth < 4) propertyRows(doc, property, path, depth + 1, rows);
    });
    return rows;
  }

  function shape(doc, title, message) {
    const schema = message.payload;
    const resolved = resolve(doc, schema) || {};
    const block = element('div', { class: 'event-shape' },
      element('h4', { text: `${title}: ${typeLabel(doc, schema)}` }));
    if (schema.description || resolved.description) {
      block.append(element('p', { class: 'muted', text: schema.description || resolved.description }));
    }
    const rows = propertyRows(doc, schema, '', 0, []);
    if (rows.length) {
      block.append(element('table', { class: 'schema' },
        element('thead', {}, element('tr', {}, ...['field', 'type', '', 'meaning']
          .map((text) => element('th', { text })))),
        element('tbody', {}, ...rows)));
    }
    (message.examples || []).forEach((example) => {
      block.append(element('pre', { class: 'example', text: JSON.stringify(example.payload, null, 2) }));
    });
    return block;
  }

  function operationEntry(doc, name, operation) {
    const direction = operation.action === 'receive' ? 'client → hub' : 'hub → client';
    const entry = element('details', { class: 'event', 'data-event': name },
      element('summary', {},
        element('code', { text: name }),
        element('span', { class: 'direction', text: direction }),
        element('span', { class: 'muted', text: operation.summary })));
    if (operation.description) entry.append(element('p', { text: operation.description }));
    operation.messages.forEach((ref) => {
      entry.append(shape(doc, 'Payload', resolve(doc, ref)));
    });
    if (operation.reply) {
      operation.reply.messages.forEach((ref) => {
        const message = resolve(doc, ref);
        entry.append(shape(doc, message.name.includes('failure') ? 'Failure' : 'Ack', message));
      });
    }
    return entry;
  }

  async function renderEvents() {
    const container = $('asyncapi');
    try {
      const response = await fetch(container.dataset.url, { headers: { Accept: 'application/json' } });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      const doc = await response.json();
      const server = Object.values(doc.servers || {})[0];
      const intro = element('p', { text: doc.info.description });
      if (server) {
        intro.append(' Endpoint: ', element('code', { text: `${server.protocol}://${server.host}${server.pathname}` }), '.');
      }
      const groups = [['receive', 'Client → hub (with an acknowledgement)'],
        ['send', 'Hub → client']].map(([action, heading]) => {
        const entries = Object.entries(doc.operations)
          .filter(([, operation]) => operation.action === action)
          .map(([name, operation]) => operationEntry(doc, name, operation));
        return element('div', { class: 'event-group', 'data-action': action },
          element('h3', { text: heading }), ...entries);
      });
      container.replaceChildren(intro, ...groups);
    } catch (err) {
      container.replaceChildren(element('p', { class: 'error', text: `Could not load the events: ${err.message}` }));
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    startSwagger();
    renderEvents();
  });
})();
