"""The gevent peer: the Flask app on gevent's WSGIServer, everything monkey-patched, one process."""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402  (after patch_all, as gevent requires)
import sys  # noqa: E402

from gevent.pool import Pool  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from flask_app import app  # noqa: E402

if __name__ == '__main__':
    port = int(sys.argv[1])
    # Celery's rpc:// result consumer lives per greenlet here, with a broker connection of its
    # own: with one greenlet per client, 1,000 clients waiting on .get() exhaust a default
    # RabbitMQ's 1,024 descriptors (measured: it stops accepting connections). BENCH_GEVENT_POOL
    # caps the greenlets serving requests, as a production deployment would have to.
    pool = os.environ.get('BENCH_GEVENT_POOL')
    spawn = Pool(int(pool)) if pool else 'default'
    # log=None: no access line per request (the bridge logs none either).
    WSGIServer(('127.0.0.1', port), app, spawn=spawn, log=None).serve_forever()
