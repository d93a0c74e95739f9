"""Operating alto-stream: the logic behind the ``alto-stream`` commands, without the CLI.

One module per concern, each usable from Python and from tests:

- :mod:`~alto_stream.ops.loading`: resolve ``"package.module:app"`` to an :class:`App`;
- :mod:`~alto_stream.ops.connect`: fail fast, and clearly, when Kafka does not answer;
- :mod:`~alto_stream.ops.topics`: create or check an app's topics, list and describe topics;
- :mod:`~alto_stream.ops.records`: decode any record with its ancestry (tail, replay, trace);
- :mod:`~alto_stream.ops.replay`: re-read records and re-feed them under new query ids;
- :mod:`~alto_stream.ops.trace`: rebuild one query's ancestry tree with stage timings;
- :mod:`~alto_stream.ops.worker`: run one stage's worker in this process, with signals;
- :mod:`~alto_stream.ops.metrics`: Prometheus metrics and stats files from worker stats;
- :mod:`~alto_stream.ops.supervisor`: keep worker processes running, restarting with backoff.

Nothing here prints: the CLI (:mod:`alto_stream.cli`) renders what these return.
The package itself exports no names (import them from their modules): a command
imports only the modules it uses, not the Kafka client for `--help`.
"""
