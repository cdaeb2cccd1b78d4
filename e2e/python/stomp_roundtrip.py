#!/usr/bin/env python3
"""STOMP round trip with Debian's python3-websockets, used by the e2e tests.

Usage: stomp_roundtrip.py WS_URL
Connects with subprotocol v12.stomp, subscribes, sends a body containing a NUL
octet (with content-length), waits for the MESSAGE, disconnects with a receipt
(accepting RabbitMQ 3.10's close 1000 in place of the RECEIPT) and prints one JSON line with what it saw.
"""
import asyncio
import json
import sys

import websockets

from stompframes import frame, parse


async def next_frame(ws):
    while True:
        f = parse(await asyncio.wait_for(ws.recv(), 10))
        if f:
            return f


async def main(url):
    out = {}
    async with websockets.connect(url, subprotocols=["v12.stomp"], ping_interval=1) as ws:
        out["subprotocol"] = ws.subprotocol
        await ws.send(frame("CONNECT", [("accept-version", "1.2"), ("host", "/"),
                                        ("login", "guest"), ("passcode", "guest")]))
        cmd, h, _ = await next_frame(ws)
        assert cmd == "CONNECTED", (cmd, h)
        out["connected"] = h.get("version")
        dest = "/queue/stompgate-e2e-python"
        await ws.send(frame("SUBSCRIBE", [("id", "1"), ("destination", dest), ("receipt", "s")]))
        cmd, h, _ = await next_frame(ws)
        assert cmd == "RECEIPT", (cmd, h)
        body = b"hello from python\x00with a NUL"
        await ws.send(frame("SEND", [("destination", dest)], body))
        cmd, h, got = await next_frame(ws)
        assert cmd == "MESSAGE", (cmd, h)
        out["body"] = got.decode()
        await ws.send(frame("DISCONNECT", [("receipt", "bye")]))
        # RabbitMQ 3.10 closes with 1000 "STOMP died" instead of a RECEIPT.
        try:
            cmd, h, _ = await next_frame(ws)
            out["disconnected"] = cmd == "RECEIPT" and h.get("receipt-id") == "bye"
        except websockets.exceptions.ConnectionClosedOK:
            out["disconnected"] = True
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
