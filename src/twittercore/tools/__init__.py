"""Command-line tools built on the library: demo, serve, load tool, report, bench."""
