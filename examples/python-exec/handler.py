#!/usr/bin/env python3
"""An Ecco handler in Python, run by `ecco agent` once per request.

stdin:  {"capability": "text/stats", "payload": <the input>, "peer": "<asker>"}
stdout: the answer, as JSON. A non-zero exit reports a handler failure.
"""
import json
import sys

request = json.load(sys.stdin)
text = request["payload"]
if not isinstance(text, str):
    print("the input must be a JSON string", file=sys.stderr)
    sys.exit(1)
words = text.split()
print(json.dumps({
    "words": len(words),
    "characters": len(text),
    "longest": max(words, key=len) if words else None,
}))
