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


seeds = {t: [] for t in ["teltonika_tcp", "teltonika_udp", "wialon", "gt06", "detect"]}
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

for target, items in seeds.items():
    d = root / "seeds" / target
    d.mkdir(parents=True, exist_ok=True)
    for b in items:
        (d / hashlib.sha1(b).hexdigest()[:16]).write_bytes(b)
    print(f"{target}: {len(set(items))} seeds")
