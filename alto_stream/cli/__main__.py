"""``python -m alto_stream.cli``: the same as the ``alto-stream`` command."""

from alto_stream.cli import main

main()
