#!/usr/bin/env python3
"""The seed case of stompgate's liveness scenarios (docs/scenarios.md, S1).

Usage: scenario_silent_client.py WS_URL [options]

A client written the way many are: Debian's python3 `websockets` (legacy
asyncio API, 10.x) with its own WebSocket keepalive (`ping_interval`), a
STOMP CONNECT that promises heart-beats (`heart-beat:<cx>,<cy>`), a
SUBSCRIBE, and then nothing but the library's WebSocket pings, because the
author assumed that pings keep the connection alive.

It prints JSON lines on stdout:
  {"event": "subscribed"}                   after SUBSCRIBE was sent
  {"event": "silent_done", ...}             when --hold seconds of silence
                                            passed with the connection open;
                                            the test then publishes a message
  {"event": "result", ...}                  last line: what the client saw
The result has: connected (command answering CONNECT), heart_beat (its
heart-beat header), frames (commands received after CONNECTED), error (the
message header of an ERROR), eols (heart-beats received), close_code and
close_reason (None while the connection was open at the end), closed_after
(seconds after SUBSCRIBE), silent_for, message (body of the MESSAGE
received after the silence) and timeout (no MESSAGE arrived).
"""
import argparse
import asyncio
import json

import websockets

from stompframes import frame, parse


def emit(obj):
    print(json.dumps(obj), flush=True)


def close_info(exc):
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return rcvd.code, rcvd.reason
    code = getattr(exc, "code", None)
    if code == 1006 or code is None:
        return 1006, ""
    return code, getattr(exc, "reason", "")


class Seen:
    def __init__(self):
        self.out = {
            "event": "result",
            "connected": None,
            "heart_beat": None,
            "frames": [],
            "error": None,
            "eols": 0,
            "close_code": None,
            "close_reason": None,
            "closed_after": None,
            "silent_for": None,
            "message": None,
            "timeout": False,
        }

    def record(self, msg):
        f = parse(msg)
        if f is None:
            self.out["eols"] += 1
            return None
        cmd, headers, _ = f
        self.out["frames"].append(cmd)
        if cmd == "ERROR":
            self.out["error"] = headers.get("message", "")
        return f


async def next_frame(ws, seen, within):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise asyncio.TimeoutError
        f = seen.record(await asyncio.wait_for(ws.recv(), remaining))
        if f is not None:
            return f


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--heart-beat", default="200,500")
    ap.add_argument("--ping-interval", type=float, default=0.1)
    ap.add_argument("--ping-timeout", type=float, default=5)
    ap.add_argument("--hold", type=float, default=6, help="seconds of silence after SUBSCRIBE")
    ap.add_argument("--message-wait", type=float, default=5)
    ap.add_argument("--destination", default="/topic/scenario")
    a = ap.parse_args()

    seen = Seen()
    out = seen.out
    loop = asyncio.get_running_loop()
    t_sub = None
    try:
        async with websockets.connect(
            a.url,
            subprotocols=["v12.stomp"],
            ping_interval=a.ping_interval,
            ping_timeout=a.ping_timeout,
            close_timeout=2,
        ) as ws:
            await ws.send(frame("CONNECT", [
                ("accept-version", "1.2"), ("host", "/"),
                ("login", "guest"), ("passcode", "guest"),
                ("heart-beat", a.heart_beat),
            ]))
            cmd, headers, _ = await next_frame(ws, seen, 5)
            out["frames"].pop()  # CONNECTED is reported on its own
            out["connected"] = cmd
            out["heart_beat"] = headers.get("heart-beat")
            if cmd != "CONNECTED":
                out["error"] = headers.get("message", "")
                emit(out)
                return
            await ws.send(frame("SUBSCRIBE", [("id", "sub-0"), ("destination", a.destination)]))
            t_sub = loop.time()
            emit({"event": "subscribed"})

            # Silence: from here on the client writes nothing itself; only
            # the library's keepalive sends WebSocket pings.
            deadline = t_sub + a.hold
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    seen.record(await asyncio.wait_for(ws.recv(), remaining))
                except asyncio.TimeoutError:
                    break
            out["silent_for"] = round(loop.time() - t_sub, 3)
            emit({"event": "silent_done", "silent_for": out["silent_for"]})

            try:
                cmd, headers, body = await next_frame(ws, seen, a.message_wait)
                if cmd == "MESSAGE":
                    out["message"] = body.decode()
            except asyncio.TimeoutError:
                out["timeout"] = True
    except websockets.exceptions.ConnectionClosed as e:
        out["close_code"], out["close_reason"] = close_info(e)
        if t_sub is not None:
            out["closed_after"] = round(loop.time() - t_sub, 3)
    except asyncio.TimeoutError:
        out["timeout"] = True
    emit(out)


asyncio.run(main())
