"""The comparison harness behind ``benchmarks/compare.py``.

One workload, every implementation, each in a fresh process:

* :mod:`.registry`  - the implementations (one entry each) and their factories;
* :mod:`.workload_file` - materialises the workload once, children replay it;
* :mod:`.adapters`  - the twittercore stores behind the harness's small protocol;
* :mod:`.phases`    - what a child times (ingest, reads, churn, fan-out, footprint);
* :mod:`.child`     - the subprocess entry point that runs one implementation;
* :mod:`.runner`    - starts children with timeouts and collects their results;
* :mod:`.crosscheck` - identical pages or the run fails;
* :mod:`.redis_server` - a throwaway ``redis-server`` on a loopback port;
* :mod:`.report`    - rich table, JSON and ``results.md``; :mod:`.plots` - PNGs.
"""
