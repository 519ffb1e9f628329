"""Celery app of the bench: the worker's task, and the client side the Python peers call send_task through."""
import os

from celery import Celery
from kombu import Exchange, Queue

# The queue the peer sends to (and the worker consumes): Celery's own topology for it, a durable
# direct exchange named like the queue, as the bridge's celery routes declare it too.
QUEUE = os.environ.get('BENCH_QUEUE', 'celery')

app = Celery('bench')
app.conf.update(
    broker_url=os.environ.get('BENCH_AMQP_URL', 'amqp://guest:guest@127.0.0.1:5672//'),
    result_backend='rpc://',
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
    task_default_queue=QUEUE,
    task_queues=[Queue(QUEUE, Exchange(QUEUE, 'direct'), routing_key=QUEUE)],
    # rpc:// declares a reply queue per client thread (per greenlet under gevent) that lives
    # result_expires after its last use: a minute instead of a day, so a bench run leaves no litter.
    result_expires=60,
)
if os.environ.get('BENCH_CONFIRM') == '1':
    # The documented way to have Celery wait for the broker's confirm of each publish (py-amqp).
    app.conf.broker_transport_options = {'confirm_publish': True}

ACK = '<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>'


@app.task(name='api.core.main')
def main(headers, query, body):
    """The seed's task signature; the work is trivial so the bench measures the transport."""
    return ACK
