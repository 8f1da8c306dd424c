// A fake SMSC for the hub's SMPP tests: a real SMPP 3.4 server on loopback, built on the
// `smpp` package's server mode (its PDU codec, not ours), with fault switches, delivery
// receipts, mobile-originated messages and a JSONL log of every submit_sm. Tests drive it
// through a small HTTP control API (see tests/fakes/smsc.py and tests/fakes/README.md).
//
//   node smsc.mjs --system-id hub --password secret --log /path/events.jsonl
//
// prints {"smpp_port": N, "control_port": M} once both listen on 127.0.0.1, and exits when
// its standard input closes, so it never outlives the test process that started it.

import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import smpp from 'smpp';

const { values: args } = parseArgs({
  options: {
    'system-id': { type: 'string' },
    password: { type: 'string' },
    log: { type: 'string' },
    port: { type: 'string', default: '0' },
    'control-port': { type: 'string', default: '0' },
  },
});

// message_state TLV values (SMPP 3.4, 5.3.2.35) for the receipt's stat: word.
const MESSAGE_STATES = {
  ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7,
  REJECTD: 8,
};
const ESM_CLASS_RECEIPT = 0x04;
const THROTTLED = 0x58;
const RX_T_APPN = 0x64; // the ESME could not take it for now: send it again

const DEFAULT_CONFIG = {
  id_format: 'decimal', // message ids in submit_sm_resp and receipted_message_id
  receipt_id_format: 'same', // the id: of the receipt text: same, decimal or hex
  receipt_form: 'tlv+text', // tlv+text, text (no TLVs) or tlv (TLVs, empty text)
  auto_receipts: true,
  receipt_delay_ms: 20,
  receipt_order: 'submitted', // or reverse: a multi-part message's receipts, last part first
  duplicate_receipts: false,
  receipt_retry_ms: 200, // a receipt answered ESME_RX_T_APPN is sent again this much later
  unbind_grace_ms: 500, // after the SMSC's own unbind, close the socket this much later
  stats: {}, // destination -> stat word, {stat, err}, or a list of those by part
};
const FAULT_KINDS = new Set(['ok', 'throttle', 'status', 'withhold', 'delay', 'unbind', 'drop']);

let config = structuredClone(DEFAULT_CONFIG);
let faultsByDest = new Map(); // destination -> {fault, remaining}
let script = [];
let nextMessageNumber = 1000000000;
let nextSessionNumber = 1;
const events = [];
const sessions = new Set();
const acceptedById = new Map(); // message id as answered -> submit record
const partsWaiting = new Map(); // concatenation key -> Map(part -> submit record)
const receiptQueue = []; // receipts not yet acknowledged by a deliver_sm_resp

function record(event) {
  const line = { ts: Date.now() / 1000, ...event };
  events.push(line);
  if (args.log) {
    fs.appendFileSync(args.log, JSON.stringify(line) + '\n');
  }
  return line;
}

function formatId(number, format) {
  return format === 'hex' ? number.toString(16) : String(number);
}

function parseFault(spec) {
  const fault = typeof spec === 'string' ? { kind: spec } : { ...spec };
  if (!FAULT_KINDS.has(fault.kind)) {
    throw new Error(`unknown fault kind ${fault.kind}; one of ${[...FAULT_KINDS]}`);
  }
  return fault;
}

function nextFault(destination) {
  if (script.length) {
    return script.shift();
  }
  const entry = faultsByDest.get(destination);
  if (!entry) {
    return { kind: 'ok' };
  }
  if (entry.remaining != null && --entry.remaining <= 0) {
    faultsByDest.delete(destination);
  }
  return entry.fault;
}

function concatenation(pdu, udh) {
  for (const element of udh || []) {
    if (element[0] === 0x00 && element.length >= 5) {
      return { ref: element[2], parts: element[3], part: element[4] };
    }
    if (element[0] === 0x08 && element.length >= 6) {
      return { ref: element.readUInt16BE(2), parts: element[4], part: element[5] };
    }
  }
  if (pdu.sar_msg_ref_num != null) {
    return { ref: pdu.sar_msg_ref_num, parts: pdu.sar_total_segments,
             part: pdu.sar_segment_seqnum };
  }
  return { ref: null, parts: 1, part: 1 };
}

function describeSubmit(session, pdu) {
  const message = pdu.message_payload || pdu.short_message || { message: '' };
  const udh = message.udh && message.udh.length ? message.udh : null;
  const udhLength = udh ? udh.reduce((total, element) => total + element.length, 0) : 0;
  return {
    event: 'submit',
    session: session.number,
    system_id: session.bound.system_id,
    sequence: pdu.sequence_number,
    source: pdu.source_addr,
    source_ton: pdu.source_addr_ton,
    source_npi: pdu.source_addr_npi,
    dest: pdu.destination_addr,
    data_coding: pdu.data_coding,
    esm_class: pdu.esm_class,
    registered_delivery: pdu.registered_delivery,
    text: String(message.message ?? ''),
    udh: udh ? Buffer.concat([Buffer.from([udhLength]), ...udh]).toString('hex') : null,
    ...concatenation(pdu, udh),
  };
}

function statFor(submit) {
  let spec = config.stats[submit.dest] ?? 'DELIVRD';
  if (Array.isArray(spec)) {
    spec = spec[submit.part - 1] ?? 'DELIVRD';
  }
  const stat = typeof spec === 'string' ? spec : spec.stat;
  const err = typeof spec === 'string' ? (stat === 'DELIVRD' ? '000' : '001') : spec.err;
  return { stat, err };
}

function wantsReceipt(submit, stat) {
  const wanted = submit.registered_delivery & 0x03;
  return wanted === 1 || (wanted === 2 && stat !== 'DELIVRD');
}

function afterAccept(submit) {
  if (!config.auto_receipts) {
    return;
  }
  if (submit.parts <= 1) {
    scheduleReceipts([submit]);
    return;
  }
  const key = [submit.system_id, submit.source, submit.dest, submit.ref, submit.parts].join('|');
  const parts = partsWaiting.get(key) || new Map();
  parts.set(submit.part, submit);
  partsWaiting.set(key, parts);
  if (parts.size === submit.parts) {
    partsWaiting.delete(key);
    const ordered = [...parts.keys()].sort((a, b) => a - b).map((part) => parts.get(part));
    scheduleReceipts(config.receipt_order === 'reverse' ? ordered.reverse() : ordered);
  }
}

function scheduleReceipts(submits) {
  setTimeout(() => {
    for (const submit of submits) {
      const { stat, err } = statFor(submit);
      if (!wantsReceipt(submit, stat)) {
        continue;
      }
      const copies = config.duplicate_receipts ? 2 : 1;
      for (let copy = 0; copy < copies; copy++) {
        queueReceipt(submit, { stat, err });
      }
    }
  }, config.receipt_delay_ms);
}

function queueReceipt(submit, { stat, err, form, receiptIdFormat }) {
  receiptQueue.push({
    submit, stat, err,
    form: form ?? config.receipt_form,
    receiptIdFormat: receiptIdFormat ?? config.receipt_id_format,
    inFlight: null,
  });
  flushReceipts();
}

function receiptDate(seconds) {
  const date = new Date(seconds * 1000);
  return [date.getUTCFullYear() % 100, date.getUTCMonth() + 1, date.getUTCDate(),
          date.getUTCHours(), date.getUTCMinutes()]
    .map((value) => String(value).padStart(2, '0')).join('');
}

function receiptPdu(receipt) {
  const { submit, stat, err, form } = receipt;
  const textId = receipt.receiptIdFormat === 'same'
    ? submit.message_id : formatId(submit.number, receipt.receiptIdFormat);
  const delivered = stat === 'DELIVRD' ? '001' : '000';
  const excerpt = submit.text.slice(0, 20).replace(/[^\x20-\x7e]/g, '?');
  const text = `id:${textId} sub:001 dlvrd:${delivered} submit date:${receiptDate(submit.ts)} `
    + `done date:${receiptDate(Date.now() / 1000)} stat:${stat} err:${err} text:${excerpt}`;
  const options = {
    source_addr_ton: submit.dest.startsWith('+') ? 1 : 0,
    source_addr_npi: 1,
    source_addr: submit.dest,
    dest_addr_ton: submit.source_ton,
    dest_addr_npi: submit.source_npi,
    destination_addr: submit.source,
    esm_class: ESM_CLASS_RECEIPT,
    data_coding: 0,
    short_message: form === 'tlv' ? Buffer.alloc(0) : Buffer.from(text, 'ascii'),
  };
  if (form !== 'text') {
    options.receipted_message_id = submit.message_id;
    options.message_state = MESSAGE_STATES[stat] ?? MESSAGE_STATES.UNKNOWN;
  }
  return { pdu: new smpp.PDU('deliver_sm', options), textId, text };
}

function receivingSession(preferred, systemId) {
  const canReceive = (session) => session.bound && session.bound.mode !== 'transmitter'
    && !session.unbinding && session.socket.writable;
  if (preferred && sessions.has(preferred) && canReceive(preferred)) {
    return preferred;
  }
  return [...sessions].find((session) => canReceive(session)
    && session.bound.system_id === systemId);
}

function flushReceipts() {
  for (const receipt of receiptQueue) {
    if (receipt.inFlight) {
      continue;
    }
    const session = receivingSession(receipt.submit.sessionRef, receipt.submit.system_id);
    if (!session) {
      return; // kept until a receiver binds, as an SMSC stores and forwards
    }
    const { pdu, textId, text } = receiptPdu(receipt);
    receipt.inFlight = session;
    session.send(pdu, (resp) => {
      if (resp.command_status === RX_T_APPN) {
        setTimeout(() => {
          if (receipt.inFlight === session) { // not already sent again on a new bind
            receipt.inFlight = null;
            flushReceipts();
          }
        }, config.receipt_retry_ms);
      } else {
        receiptQueue.splice(receiptQueue.indexOf(receipt), 1);
      }
      record({
        event: 'receipt', session: session.number, message_id: receipt.submit.message_id,
        text_id: textId, dest: receipt.submit.dest, part: receipt.submit.part,
        parts: receipt.submit.parts, stat: receipt.stat, err: receipt.err, form: receipt.form,
        text, resp_status: resp.command_status,
      });
    });
  }
}

function smscUnbind(session) {
  session.unbinding = true;
  session.unbind(() => session.destroy());
  setTimeout(() => session.destroy(), config.unbind_grace_ms);
  record({ event: 'unbind', session: session.number, by: 'smsc' });
}

function drop(session) {
  record({ event: 'drop', session: session.number });
  session.socket.resetAndDestroy();
}

function onSubmit(session, pdu) {
  if (!session.bound || session.bound.mode === 'receiver' || session.unbinding) {
    record({ event: 'submit', session: session.number, sequence: pdu.sequence_number,
             dest: pdu.destination_addr, message_id: null, status: smpp.ESME_RINVBNDSTS,
             outcome: 'not_bound' });
    session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
    return;
  }
  const fault = nextFault(pdu.destination_addr);
  const submit = describeSubmit(session, pdu);
  const status = fault.kind === 'throttle' ? THROTTLED
    : fault.kind === 'status' ? fault.status : 0;
  if (status) {
    record({ ...submit, message_id: null, status, outcome: fault.kind });
    session.send(pdu.response({ command_status: status }));
    return;
  }
  const number = nextMessageNumber++;
  const messageId = formatId(number, config.id_format);
  const answered = ['ok', 'delay'].includes(fault.kind);
  const line = record({ ...submit, message_id: messageId, status: answered ? 0 : null,
                        outcome: fault.kind });
  const accepted = { ...line, number, sessionRef: session };
  acceptedById.set(messageId, accepted);
  if (fault.kind === 'ok') {
    session.send(pdu.response({ message_id: messageId }));
    afterAccept(accepted);
  } else if (fault.kind === 'delay') {
    setTimeout(() => {
      session.send(pdu.response({ message_id: messageId }));
      afterAccept(accepted);
    }, fault.delay_ms ?? 1000);
  } else if (fault.kind === 'unbind') {
    smscUnbind(session);
  } else if (fault.kind === 'drop') {
    drop(session);
  } // withhold: no submit_sm_resp, ever
}

function onBind(session, mode, pdu) {
  let status = 0;
  if (session.bound) {
    status = smpp.ESME_RALYBND;
  } else if (pdu.system_id !== args['system-id']) {
    status = smpp.ESME_RINVSYSID;
  } else if (pdu.password !== args.password) {
    status = smpp.ESME_RINVPASWD;
  }
  record({ event: 'bind', session: session.number, mode, system_id: pdu.system_id, status });
  if (status) {
    session.send(pdu.response({ command_status: status }), () => session.destroy());
    return;
  }
  session.bound = { mode, system_id: pdu.system_id };
  session.send(pdu.response({ system_id: 'fake-smsc' }));
  flushReceipts();
}

const server = smpp.createServer((session) => {
  session.number = nextSessionNumber++;
  session.socket.setNoDelay(true); // answers leave at once, as an SMSC tuned for throughput
  sessions.add(session);
  for (const mode of ['transceiver', 'transmitter', 'receiver']) {
    session.on(`bind_${mode}`, (pdu) => onBind(session, mode, pdu));
  }
  session.on('submit_sm', (pdu) => onSubmit(session, pdu));
  session.on('enquire_link', (pdu) => {
    record({ event: 'enquire_link', session: session.number });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    record({ event: 'unbind', session: session.number, by: 'esme' });
    session.bound = null;
    session.send(pdu.response(), () => session.destroy());
  });
  session.on('unknown', (pdu) => session.send(pdu.response()));
  session.on('error', () => {}); // a peer's reset ends the session; 'close' follows
  session.on('close', () => {
    sessions.delete(session);
    for (const receipt of receiptQueue) {
      if (receipt.inFlight === session) {
        receipt.inFlight = null;
      }
    }
    record({ event: 'close', session: session.number });
    flushReceipts();
  });
});

function sendMo({ source, dest, text, system_id: systemId }) {
  const session = receivingSession(null, systemId ?? args['system-id']);
  if (!session) {
    return Promise.reject(new Error('no bound receiver to deliver to'));
  }
  const gsm = smpp.encodings.ASCII.match(text);
  const pdu = new smpp.PDU('deliver_sm', {
    source_addr_ton: source.startsWith('+') ? 1 : 0, source_addr_npi: 1, source_addr: source,
    dest_addr_ton: 0, dest_addr_npi: 1, destination_addr: dest,
    esm_class: 0, data_coding: gsm ? 0 : 8, short_message: text,
  });
  return new Promise((resolve) => {
    session.send(pdu, (resp) => resolve(record({
      event: 'mo', session: session.number, source, dest, text,
      data_coding: pdu.data_coding, resp_status: resp.command_status,
    })));
  });
}

// Any PDU, well formed or not, as raw bytes on a receiving session: what an ESME does with
// a PDU it cannot read. Resolves with the answer's command and status (null after 2 s).
function sendPdu({ command_id: commandId, command_status: status, body_hex: bodyHex,
                   command_length: commandLength, system_id: systemId }) {
  const session = receivingSession(null, systemId ?? args['system-id']);
  if (!session) {
    return Promise.reject(new Error('no bound receiver to send to'));
  }
  if (session.sequence == 0x7FFFFFFF) {
    session.sequence = 0;
  }
  const sequence = ++session.sequence;
  const body = Buffer.from(bodyHex ?? '', 'hex');
  const header = Buffer.alloc(16);
  header.writeUInt32BE(commandLength ?? 16 + body.length, 0);
  header.writeUInt32BE(commandId >>> 0, 4);
  header.writeUInt32BE(status ?? 0, 8);
  header.writeUInt32BE(sequence, 12);
  return new Promise((resolve) => {
    const done = (resp) => {
      clearTimeout(timer);
      delete session._callbacks[sequence];
      resolve(record({
        event: 'pdu', session: session.number, command_id: commandId, sequence,
        resp_command: resp ? resp.command : null, resp_status: resp ? resp.command_status : null,
      }));
    };
    const timer = setTimeout(() => done(null), 2000);
    session._callbacks[sequence] = done;
    session.socket.write(Buffer.concat([header, body]));
  });
}

function manualReceipt(body) {
  const submit = acceptedById.get(String(body.message_id));
  if (!submit) {
    throw new Error(`no accepted submit_sm with id ${body.message_id}`);
  }
  const stat = body.stat ?? 'DELIVRD';
  queueReceipt(submit, {
    stat, err: body.err ?? (stat === 'DELIVRD' ? '000' : '001'),
    form: body.form, receiptIdFormat: body.receipt_id_format,
  });
}

const CONTROL = {
  'GET /state': () => ({
    events, receipts_queued: receiptQueue.length,
    sessions: [...sessions].map((session) => ({ number: session.number, bound: session.bound })),
  }),
  'POST /config': (body) => {
    for (const key of Object.keys(body)) {
      if (!(key in DEFAULT_CONFIG)) {
        throw new Error(`unknown setting ${key}`);
      }
    }
    Object.assign(config, body);
    return config;
  },
  'POST /fault': (body) => {
    const { dest, times, ...spec } = body;
    faultsByDest.set(dest, { fault: parseFault(spec), remaining: times ?? null });
    return { ok: true };
  },
  'POST /script': (body) => {
    script.push(...body.faults.map(parseFault));
    return { ok: true };
  },
  'POST /reset': () => {
    config = structuredClone(DEFAULT_CONFIG);
    faultsByDest = new Map();
    script = [];
    return { ok: true };
  },
  'POST /receipt': (body) => {
    manualReceipt(body);
    return { ok: true };
  },
  'POST /mo': (body) => sendMo(body),
  'POST /pdu': (body) => sendPdu(body),
  'POST /unbind': () => {
    [...sessions].filter((session) => session.bound).forEach(smscUnbind);
    return { ok: true };
  },
  'POST /drop': () => {
    [...sessions].forEach(drop);
    return { ok: true };
  },
};

const control = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', async () => {
    const handler = CONTROL[`${request.method} ${request.url}`];
    let status = 200;
    let answer;
    try {
      if (!handler) {
        status = 404;
        throw new Error(`no control action ${request.method} ${request.url}`);
      }
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
      answer = await handler(body);
    } catch (error) {
      status = status === 200 ? 400 : status;
      answer = { error: String(error.message || error) };
    }
    const data = JSON.stringify(answer);
    response.writeHead(status, { 'Content-Type': 'application/json' });
    response.end(data);
  });
});

server.listen(Number(args.port), '127.0.0.1', () => {
  control.listen(Number(args['control-port']), '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({
      smpp_port: server.address().port, control_port: control.address().port,
    }) + '\n');
  });
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
