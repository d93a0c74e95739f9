"""The app the web view's browser test runs as worker processes (written out as a module).

A depth-0 map (``check``) fails on a query containing "boom" while the file
named by ``ALTO_UI_FAIL_FILE`` exists, so a test can send a record to a
dead-letter topic, fix the "bug" (remove the file) and replay the letter; the
replayed query then completes. Then split -> map (a filter) -> aggregate.
``APP.format(name=...)`` is the module's source (``{{``/``}}`` are literal braces).
"""

APP = """
import os

from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


@app.map(source=app.input, schema="alto.Text")
async def check(doc):
    flag = os.environ.get("ALTO_UI_FAIL_FILE")
    if "boom" in doc["text"] and flag and os.path.exists(flag):
        raise ValueError("boom is not allowed while " + flag + " exists")
    return doc


@app.split(source=check, schema="alto.Text")
async def words(doc):
    return [{{"text": w}} for w in doc["text"].split()]


@app.map(source=words, schema="alto.Text")
async def shout(word):
    if word["text"] == "skip":
        return None
    return {{"text": word["text"].upper()}}


@app.aggregate(source=shout, closes=words, schema="alto.Text")
async def joined(children):
    return {{"text": " ".join(c.value["text"] for c in children if c.ok)}}
"""
