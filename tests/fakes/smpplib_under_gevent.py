"""smpplib in a monkey-patched interpreter, as the hub runs it.

``python -m tests.fakes.smpplib_under_gevent HOST PORT SYSTEM_ID PASSWORD`` prints
what it saw as JSON.

One greenlet sits in smpplib's blocking ``listen()`` while the main one submits a
three-part and a one-part message and a third one ticks: if smpplib's socket did
not yield to gevent, the ticker would stop while the reader waits for receipts
(and the whole process would hang).
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import json
import sys

import gevent
import gevent.socket
import smpplib.client
import smpplib.gsm

TEXTS = ("The quick brown fox jumps over the lazy dog. " * 9, "single")


def run(host: str, port: int, system_id: str, password: str) -> dict:
    client = smpplib.client.Client(host, port, timeout=5, allow_unknown_opt_params=True)
    ids: list[str] = []
    receipts: list[str] = []
    client.set_message_sent_handler(lambda pdu: ids.append(pdu.message_id.decode()))
    client.set_message_received_handler(
        lambda pdu: receipts.append(pdu.receipted_message_id.decode()))
    client.connect()
    client.bind_transceiver(system_id=system_id, password=password)
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            gevent.sleep(0.01)

    ticker = gevent.spawn(tick)
    reader = gevent.spawn(client.listen)
    for text in TEXTS:
        parts, coding, esm_class = smpplib.gsm.make_parts(text)
        for part in parts:
            client.send_message(source_addr_ton=1, source_addr="+15017122661",
                                dest_addr_ton=1, destination_addr="+15558675310",
                                short_message=part, data_coding=coding, esm_class=esm_class,
                                registered_delivery=1)
    with gevent.Timeout(10):
        while len(receipts) < 4:
            gevent.sleep(0.01)
    ticks_while_reading = ticks
    gevent.killall([ticker, reader])
    client.disconnect()
    return {"patched": smpplib.client.socket.socket is gevent.socket.socket,
            "ids": ids, "receipts": receipts, "ticks": ticks_while_reading}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])))
