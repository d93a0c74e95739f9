"""The split -> map -> aggregate app that the CLI-process tests write out as a module.

``APP.format(name=...)`` is the module's source (``{{``/``}}`` are literal braces).
"""

APP = """
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


@app.split(source=app.input, schema="alto.Text")
async def words(doc):
    return [{{"text": w}} for w in doc["text"].split()]


@app.map(source=words, schema="alto.Text")
async def shout(word):
    return {{"text": word["text"].upper()}}


@app.aggregate(source=shout, closes=words, schema="alto.Text")
async def joined(children):
    return {{"text": " ".join(c.value["text"] for c in children if c.ok)}}
"""
