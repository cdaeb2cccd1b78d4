"""STOMP framing shared by the e2e Python clients: deliberately simple, one
frame per WebSocket message."""


def frame(command, headers, body=b""):
    """Encodes a frame; a body gets a content-length so NUL octets survive."""
    head = command + "\n" + "".join(f"{k}:{v}\n" for k, v in headers)
    if body:
        head += f"content-length:{len(body)}\n"
    return head.encode() + b"\n" + body + b"\x00"


def parse(msg):
    """Returns (command, headers, body), or None for a heart-beat.
    The first occurrence of a header wins, as the spec says."""
    if isinstance(msg, str):
        msg = msg.encode()
    msg = msg.lstrip(b"\r\n")
    if not msg:
        return None
    head, _, rest = msg.partition(b"\n\n")
    lines = head.decode().replace("\r\n", "\n").split("\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k, v)
    if "content-length" in headers:
        body = rest[: int(headers["content-length"])]
    else:
        body = rest.split(b"\x00", 1)[0]
    return lines[0], headers, body
