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


def frame(command, headers, body=b""):
    head = command + "\n" + "".join(f"{k}:{v}\n" for k, v in headers)
    if body:
        head += f"content-length:{len(body)}\n"
    return head.encode() + b"\n" + body + b"\x00"


def parse(msg):
    if isinstance(msg, str):
        msg = msg.encode()
    msg = msg.lstrip(b"\r\n")
    if not msg:
        return None
    head, _, rest = msg.partition(b"\n\n")
    lines = head.decode().split("\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k, v)
    n = int(headers.get("content-length", rest.index(b"\x00")))
    return lines[0], headers, rest[:n]


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
