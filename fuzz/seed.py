#!/usr/bin/env python3
"""Writes the fuzz seed corpora from the conformance frames (tests/data/traccar-frames.json).

Run from anywhere: `python3 fuzz/seed.py`. Seeds go to fuzz/seeds/<target>/ (committed; small).
Chunked targets take one leading "chunking" byte: 0x00 = the stream at once.
"""
import hashlib
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent
frames = json.loads((root.parent / "tests/data/traccar-frames.json").read_text())
login = bytes.fromhex("000f333536333037303432343431303133")  # IMEI 356307042441013
# GT06 login of IMEI 352887071911998: the session refuses every other packet before it.
gt06_login = bytes.fromhex("78780d010352887071911998000479d00d0a")


def wire(f):
    if f["encoding"] == "hex":
        try:
            return bytes.fromhex(f["frame"])
        except ValueError:
            return None
    return (f["frame"] + "\r\n").encode()


seeds = {t: [] for t in ["teltonika_tcp", "teltonika_udp", "wialon", "gt06", "detect", "session"]}
wialon_login = b"#L#2.0;356307042441013;NA;"
for f in frames:
    b = wire(f)
    if b is None:
        continue
    p, t = f["protocol"], f["transport"]
    seeds["detect"].append(b)
    if p == "teltonika" and t == "udp":
        seeds["teltonika_udp"].append(b)
    elif p == "teltonika" and f["wire"].get("kind") != "imei_login":
        seeds["teltonika_tcp"].append(b"\x00" + login + b)
        seeds["teltonika_tcp"].append(b"\xc5" + login + b)  # in small chunks
    elif p == "wialon":
        seeds["wialon"].append(b"\x00" + b)
    elif p == "gt06":
        seeds["gt06"].append(b"\x00" + b)
        if f["wire"].get("protocol_number") != "0x01":
            seeds["gt06"].append(b"\x00" + gt06_login + b)

# `session` picks (protocol, transport) by its first byte, in registry order: the README's
# protocol table is generated from the registry (`avlgate protocols`, checked by tests/cli.rs).
pairs = []
for line in (root.parent / "README.md").read_text().split("<!-- protocols:begin")[1].splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) > 3 and cells[1].startswith("`") and ("TCP" in cells[2] or "UDP" in cells[2]):
        for t in cells[2].split(", "):
            pairs.append((cells[1].strip("`"), t.lower()))
    elif pairs and not line.startswith("|"):
        break
more = json.loads((root.parent / "tests/data/traccar-frames-more.json").read_text())
for f in frames + more:
    b = wire(f)
    if b is None or f.get("direction", "device_to_server") != "device_to_server":
        continue
    for i, (p, t) in enumerate(pairs):
        if p == f["protocol"] or (p == "wialon" and f["protocol"] == "wialon_ips"):
            if t == f.get("transport", "tcp") or (t == "udp" and f["encoding"] == "text"):
                seeds["session"].append(bytes([i, 0]) + b)

for target, items in seeds.items():
    d = root / "seeds" / target
    d.mkdir(parents=True, exist_ok=True)
    for b in items:
        (d / hashlib.sha1(b).hexdigest()[:16]).write_bytes(b)
    print(f"{target}: {len(set(items))} seeds")
