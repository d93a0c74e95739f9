"""``alto-stream ui``: a live web view of one app on its Kafka cluster.

The page (``static/``: one HTML file, vanilla JavaScript, inline SVG; no build
step, nothing fetched from outside) shows the app's topology with live
per-stage figures, the recent queries with their waterfalls, and the dead
letters with a replay button. Everything it shows is read from Kafka (and,
when given, the workers' Prometheus endpoints), so a remote cluster works the
same as a local one.

Layers, data flowing one way:

- :mod:`~alto_stream.ui.graph`, :mod:`~alto_stream.ui.waterfall`: pure
  functions of a topology or a trace, to JSON;
- :mod:`~alto_stream.ui.stages`, :mod:`~alto_stream.ui.queries`: boards fed by
  cluster snapshots, scraped metrics and decoded records (no I/O of their own);
- :mod:`~alto_stream.ui.cluster`: the Kafka reads behind the stage board;
- :mod:`~alto_stream.ui.service`: the running view (follows topics, traces,
  replays, pushes);
- :mod:`~alto_stream.ui.server`: the ASGI app (starlette) and its event stream.
"""
